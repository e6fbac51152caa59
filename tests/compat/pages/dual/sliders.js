// The /ptz/ socket: the server's array sets the sliders; a slider's move changes its value and sends the array back.
let ptzState = null;
let ptzSocket = null;

function showState() {
  for (const input of document.querySelectorAll('#sliders input')) {
    const part = ptzState[Number(input.dataset.cam)];
    if (input.dataset.flip) {
      input.checked = Boolean(part.f[input.dataset.flip]);
    } else {
      const axis = part[input.dataset.axis];
      input.min = axis.min;
      input.max = axis.max;
      input.value = axis.val;
    }
  }
}

function startSliders(port) {
  ptzSocket = new WebSocket('ws://' + document.location.hostname + ':' + port + '/ptz/');
  ptzSocket.addEventListener('message', (event) => {
    ptzState = JSON.parse(event.data);
    showState();
  });
  for (const input of document.querySelectorAll('#sliders input')) {
    input.addEventListener(input.dataset.flip ? 'change' : 'input', () => {
      const part = ptzState[Number(input.dataset.cam)];
      if (input.dataset.flip) part.f[input.dataset.flip] = input.checked ? 1 : 0;
      else part[input.dataset.axis].val = Number(input.value);
      ptzSocket.send(JSON.stringify(ptzState));
    });
  }
}
