// One captioning stream on /v1/stream: audio out, events in, and resuming after a drop.
"use strict";

import {Backoff, socketUrl} from "./captions.js";

const MAX_HELD_S = 300;  // audio kept for resending after a drop, as the Python client keeps
const MAX_BUFFERED = 1 << 20;  // bytes the socket may hold unsent before audio waits
const REFUSED = new Set([1003, 1008, 1009, 4001]);  // closes that a retry would not fix
const GONE = "unknown or expired session";

/**
 * Sends 16-bit mono PCM at `sampleRate` and hands events on, exactly once and in order.
 * A dropped connection is resumed (`resume`, `since`) and the audio the server lacks is
 * sent again; a session the server no longer has is continued by a new one from the end
 * of the last final, its times shifted to follow the old ones.
 */
export class Stream {
  constructor({params, sampleRate, onEvent, onState}) {
    this.params = {...params, sample_rate: sampleRate, encoding: "pcm_s16le", channels: 1};
    this.bytesPerSecond = sampleRate * 2;
    this.onEvent = onEvent;
    this.onState = onState;
    this.chunks = [];  // [offset, Uint8Array], from `base`
    this.base = 0;
    this.end = 0;  // bytes captured
    this.sent = 0;  // bytes sent on this connection
    this.sentEver = 0;
    this.confirmed = 0;  // the server surely has everything before: a final ended there
    this.shift = 0;  // seconds of a lost session before the current one
    this.session = null;
    this.resumeUntil = 0;
    this.lastSeq = 0;
    this.lastFinalEnd = 0;
    this.stopping = false;
    this.eosSent = false;
    this.over = false;
    this.backoff = new Backoff();
    this.ws = null;
    this.connect(false);
  }

  /** Audio captured: an ArrayBuffer of Int16 samples. */
  add(buffer) {
    if (this.over || buffer.byteLength === 0) return;
    this.chunks.push([this.end, new Uint8Array(buffer)]);
    this.end += buffer.byteLength;
    this.pump();
  }

  /** No more audio: send the rest, then eos; the stream is over at `end`. */
  stop() {
    this.stopping = true;
    this.pump();
  }

  /** Leave now, without waiting for the last finals. */
  abort() {
    this.over = true;
    if (this.ws) this.ws.close(1000, "stopped");
  }

  connect(resuming) {
    const params = {...this.params};
    if (resuming) Object.assign(params, {resume: this.session, since: this.lastSeq});
    const ws = new WebSocket(socketUrl("v1/stream", params));
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.live = false;
    this.onState(resuming ? "resuming" : "connecting");
    ws.onmessage = (msg) => {
      if (typeof msg.data === "string") this.receive(JSON.parse(msg.data), resuming);
    };
    ws.onclose = (close) => this.closed(ws, close);
  }

  receive(event, resuming) {
    if (event.type === "ready") {
      if (resuming) this.rewind(Math.round(event.audio_received * this.bytesPerSecond / 2) * 2);
      else if (!this.session) this.onEvent(event, 0);
      this.session = event.session;
      this.resumeUntil = Number(event.resume_until || 0);
      this.lastSeq = Math.max(this.lastSeq, event.seq);
      this.live = true;
      this.backoff.reset();
      this.onState("live", resuming ? `resumed at ${event.audio_received.toFixed(1)} s` : "");
      this.pump();
      return;
    }
    if (event.type === "error" && !this.live) {
      this.refusal = event;  // before ready: a refusal; the close says if it is fatal
      return;
    }
    if (event.type !== "error" && event.seq <= this.lastSeq) return;  // a replay we have
    if (event.type !== "error") this.lastSeq = event.seq;
    if (event.type === "final") {
      this.lastFinalEnd = event.end + this.shift;
      this.confirm(Math.round(event.end * this.bytesPerSecond / 2) * 2 + this.shiftBytes());
    }
    this.onEvent(event, this.shift);
    if (event.type === "end" && this.eosSent) this.over = true;
  }

  shiftBytes() { return Math.round(this.shift * this.bytesPerSecond / 2) * 2; }

  pump() {
    const ws = this.ws;
    if (!ws || !this.live || ws.readyState !== WebSocket.OPEN || this.eosSent) return;
    for (const [offset, chunk] of this.chunks) {
      if (ws.bufferedAmount > MAX_BUFFERED) { setTimeout(() => this.pump(), 100); return; }
      if (offset + chunk.length <= this.sent) continue;
      const part = offset < this.sent ? chunk.subarray(this.sent - offset) : chunk;
      ws.send(part);
      this.sent += part.length;
      this.sentEver = Math.max(this.sentEver, this.sent);
    }
    if (this.stopping && this.sent >= this.end) {
      ws.send(JSON.stringify({type: "eos"}));
      this.eosSent = true;
      this.onState("finishing");
    }
    this.trim();
  }

  rewind(offset) {
    this.sent = Math.min(Math.max(offset + this.shiftBytes(), this.base), this.end);
  }

  confirm(offset) {
    this.confirmed = Math.max(this.confirmed, Math.min(offset, this.sentEver));
    this.trim();
  }

  trim() {
    const keepFrom = Math.max(this.confirmed, this.sentEver - MAX_HELD_S * this.bytesPerSecond);
    while (this.chunks.length && this.chunks[0][0] + this.chunks[0][1].length <= keepFrom) {
      const [offset, chunk] = this.chunks.shift();
      this.base = offset + chunk.length;
    }
  }

  closed(ws, close) {
    if (ws !== this.ws) return;
    this.live = false;
    const refusal = this.refusal;
    this.refusal = null;
    if (this.over) { this.onState("ended"); return; }
    if (refusal && refusal.message && refusal.message.includes(GONE)) {
      this.restart();
      return;
    }
    // Before a first ready there is nothing to resume: say why at once, do not retry.
    if (REFUSED.has(close.code) || !this.session || (refusal && refusal.code === "bad_request")) {
      this.over = true;
      this.onState("refused", refusal || {code: "closed",
        message: close.reason || `the server closed the connection (code ${close.code})`});
      return;
    }
    const budget = Math.min(300, Math.max(30, this.resumeUntil)) * 1000;
    this.lostAt = this.lostAt || Date.now();
    if (Date.now() - this.lostAt > budget) {
      this.over = true;
      this.onState("refused", {code: "unreachable",
        message: `lost the server and could not resume within ${budget / 1000} s`});
      return;
    }
    this.onState("reconnecting", refusal ? refusal.message : close.reason || "connection lost");
    this.eosSent = false;
    setTimeout(() => {
      if (this.over) return;
      this.connect(Boolean(this.session && this.resumeUntil > 0));
      this.ws.addEventListener("open", () => { this.lostAt = 0; }, {once: true});
    }, this.backoff.next());
  }

  /** The server lost the session: a new one, fed from the end of the last final. */
  restart() {
    const from = Math.round(this.lastFinalEnd * this.bytesPerSecond / 2) * 2;
    this.sent = Math.min(Math.max(from, this.base), this.end);
    this.shift = this.sent / this.bytesPerSecond;
    this.session = null;
    this.lastSeq = 0;
    this.eosSent = false;
    this.connect(false);
  }
}
