window.onload = function () {
  for (const cam of [0, 1]) {
    const player = new JMuxer({
      node: 'stream' + cam, mode: 'video', flushingTime: 0, fps: $fps, width: $width, height: $height, debug: false
    });
    const socket = new WebSocket('ws://' + document.location.hostname + ':' + $port + '/cam' + cam + '/');
    socket.binaryType = 'arraybuffer';
    socket.addEventListener('message', (event) => {
      if (!document.hidden) player.feed({ video: new Uint8Array(event.data) });
    });
  }
  startSliders($port);
};
