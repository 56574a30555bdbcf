// AudioWorklet: the captured audio as mono 16-bit PCM frames of FRAME_S, for /v1/stream.
"use strict";

// 50 ms: inside the protocol's 20-200 ms for live sources, and a partial is never late
// by more than one frame.
const FRAME_S = 0.05;

class CaptureProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.frame = new Int16Array(Math.round(sampleRate * FRAME_S));
    this.filled = 0;
    // "flush": send what is held now (Stop), so that no captured audio is left behind.
    this.port.onmessage = (msg) => { if (msg.data === "flush") this.send(); };
  }

  send() {
    if (this.filled === 0) return;
    const out = this.frame.slice(0, this.filled);
    this.port.postMessage(out.buffer, [out.buffer]);
    this.filled = 0;
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true;
    const n = channels[0].length;
    for (let i = 0; i < n; i++) {
      let sum = 0;
      for (const channel of channels) sum += channel[i];
      const sample = Math.max(-1, Math.min(1, sum / channels.length));
      this.frame[this.filled++] = sample < 0 ? sample * 0x8000 : sample * 0x7fff;
      if (this.filled === this.frame.length) this.send();
    }
    return true;
  }
}

registerProcessor("captioncast-capture", CaptureProcessor);
