// Just enough Annex-B parsing to name the codec when the server has not (init.codec null).

/** Return the RFC 6381 codec string (avc1.PPCCLL) from the first SPS of an Annex-B access unit, or null. */
export function codecFromAnnexB(bytes) {
  for (let i = 0; i + 7 < bytes.length; i++) {
    const startCode3 = bytes[i] === 0 && bytes[i + 1] === 0 && bytes[i + 2] === 1;
    if (!startCode3) continue;
    const nal = i + 3;
    if ((bytes[nal] & 0x1f) === 7) {
      const hex = (b) => b.toString(16).padStart(2, '0').toUpperCase();
      return `avc1.${hex(bytes[nal + 1])}${hex(bytes[nal + 2])}${hex(bytes[nal + 3])}`;
    }
    i = nal - 1;
  }
  return null;
}
