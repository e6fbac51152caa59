// Minimal ISO-BMFF reading for the MSE player: the track timescale and edit offset of the init segment, and the
// presentation time of each one-frame fragment, so a presented frame (rVFC mediaTime) maps back to its capture time.

function* boxes(bytes, start = 0, end = bytes.length) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = start;
  while (pos + 8 <= end) {
    let size = view.getUint32(pos);
    const type = String.fromCharCode(bytes[pos + 4], bytes[pos + 5], bytes[pos + 6], bytes[pos + 7]);
    let header = 8;
    if (size === 1) {
      if (pos + 16 > end) return;
      size = Number(view.getBigUint64(pos + 8));
      header = 16;
    } else if (size === 0) {
      size = end - pos;
    }
    if (size < header || pos + size > end) return;
    yield { type, start: pos, body: pos + header, end: pos + size, view };
    pos += size;
  }
}

function child(bytes, parent, type) {
  for (const box of boxes(bytes, parent ? parent.body : 0, parent ? parent.end : bytes.length)) {
    if (box.type === type) return box;
  }
  return null;
}

function path(bytes, parent, ...types) {
  let box = parent;
  for (const type of types) {
    box = child(bytes, box, type);
    if (!box) return null;
  }
  return box;
}

function handlerType(bytes, trak) {
  const hdlr = path(bytes, trak, 'mdia', 'hdlr');
  if (!hdlr) return null;
  const p = hdlr.body + 8; // version+flags, pre_defined
  return String.fromCharCode(bytes[p], bytes[p + 1], bytes[p + 2], bytes[p + 3]);
}

/**
 * Read the video track's timescale (mdhd) and the start offset of its edit list (elst media_time, in seconds)
 * from an init segment (ftyp + moov). Returns {timescale, editOffsetS} or null.
 */
export function parseInitSegment(bytes) {
  const moov = child(bytes, null, 'moov');
  if (!moov) return null;
  let trak = null;
  for (const box of boxes(bytes, moov.body, moov.end)) {
    if (box.type !== 'trak') continue;
    if (!trak || handlerType(bytes, box) === 'vide') trak = box;
  }
  if (!trak) return null;
  const mdhd = path(bytes, trak, 'mdia', 'mdhd');
  if (!mdhd) return null;
  const { view } = mdhd;
  const version = bytes[mdhd.body];
  const timescale = view.getUint32(mdhd.body + (version === 1 ? 20 : 12));
  if (!timescale) return null;
  let editOffsetS = 0;
  const elst = path(bytes, trak, 'edts', 'elst');
  if (elst) {
    const v = bytes[elst.body];
    const count = view.getUint32(elst.body + 4);
    let p = elst.body + 8;
    for (let i = 0; i < count; i++) {
      const mediaTime = v === 1 ? Number(view.getBigInt64(p + 8)) : view.getInt32(p + 4);
      p += v === 1 ? 20 : 12;
      if (mediaTime >= 0) { // -1 marks an empty edit
        editOffsetS = mediaTime / timescale;
        break;
      }
    }
  }
  return { timescale, editOffsetS };
}

/**
 * Return the presentation time in seconds (tfdt + first sample's composition offset − edit offset) of a
 * fragment (moof + mdat), or null when the fragment carries no tfdt.
 */
export function fragmentTime(bytes, init) {
  const traf = path(bytes, null, 'moof', 'traf');
  if (!traf || !init) return null;
  const tfdt = child(bytes, traf, 'tfdt');
  if (!tfdt) return null;
  const { view } = tfdt;
  const decodeTime = bytes[tfdt.body] === 1 ? Number(view.getBigUint64(tfdt.body + 4)) : view.getUint32(tfdt.body + 4);
  return (decodeTime + firstCompositionOffset(bytes, traf)) / init.timescale - init.editOffsetS;
}

function firstCompositionOffset(bytes, traf) {
  const trun = child(bytes, traf, 'trun');
  if (!trun) return 0;
  const { view } = trun;
  const version = bytes[trun.body];
  const flags = view.getUint32(trun.body) & 0xffffff;
  if (!(flags & 0x800) || view.getUint32(trun.body + 4) === 0) return 0;
  let p = trun.body + 8;
  if (flags & 0x1) p += 4; // data_offset
  if (flags & 0x4) p += 4; // first_sample_flags
  if (flags & 0x100) p += 4; // sample_duration
  if (flags & 0x200) p += 4; // sample_size
  if (flags & 0x400) p += 4; // sample_flags
  return version === 1 ? view.getInt32(p) : view.getUint32(p);
}
