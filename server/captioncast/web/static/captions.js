// What both pages share: URLs relative to the page, the running transcript, its files.
"use strict";

export const query = new URLSearchParams(location.search);

// Relative to the page, so that the pages work under a proxy's path prefix too.
export function pageUrl(path, params = {}) {
  const url = new URL(path, location.href);
  url.search = "";
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") url.searchParams.set(key, String(value));
  }
  return url;
}

export function socketUrl(path, params) {
  const url = pageUrl(path, params);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.toString();
}

// The token travels as a header where the browser lets a page set one (fetch), and as
// ?token= only where it cannot (WebSocket). The pages never send it on as a Referer.
export async function getJson(path, token) {
  const headers = token ? {Authorization: `Bearer ${token}`} : {};
  const response = await fetch(pageUrl(path), {headers, cache: "no-store"});
  let body = {};
  try { body = await response.json(); } catch { /* not JSON: the status says enough */ }
  return {status: response.status, body};
}

export const ERROR_HELP = {
  unauthorized: "The server refused the token: enter the server's token in the Token field "
    + "(or open this page with ?token=…).",
  overloaded: "The server is at capacity right now: try again in a minute, or ask its "
    + "operator for more decode workers.",
  bad_request: "The server refused these options.",
  bad_audio: "The server could not read the audio.",
  too_large: "An audio frame was too large for the server.",
  timeout: "The server stopped waiting.",
  internal: "The server failed; its log says why.",
};

export function describeError(event) {
  const help = ERROR_HELP[event.code] || "";
  return `${help} (${event.code}: ${event.message})`.trim();
}

/** "just now", "40 s ago", "5 min ago", "3 h ago", "2 days ago": `when` in Unix seconds. */
export function ago(when) {
  const seconds = Math.max(0, Date.now() / 1000 - when);
  if (seconds < 5) return "just now";
  if (seconds < 60) return `${Math.floor(seconds)} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  const days = Math.floor(seconds / 86400);
  return `${days} day${days > 1 ? "s" : ""} ago`;
}

/** Fills `element` with words: strings, {link: text, href}, {strong: text}, {code: text}. */
export function say(element, ...parts) {
  element.replaceChildren(...parts.map((part) => {
    if (typeof part === "string") return part;
    if (part.link) return Object.assign(document.createElement("a"), {href: part.href, textContent: part.link});
    const tag = part.code ? "code" : "strong";
    return Object.assign(document.createElement(tag), {textContent: part[tag]});
  }));
}

export function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const mm = String(Math.floor(s / 60) % 60).padStart(2, "0");
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

function cueTime(seconds, separator) {
  const ms = Math.max(0, Math.round(seconds * 1000));
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(Math.floor(ms / 3600000))}:${pad(Math.floor(ms / 60000) % 60)}:`
    + `${pad(Math.floor(ms / 1000) % 60)}${separator}${pad(ms % 1000, 3)}`;
}

/** The finals so far, in order, and the partial after them. */
export class Transcript {
  constructor() {
    this.finals = [];  // {start, end, text, language, seq}; empty finals are not kept
    this.partial = null;  // {utterance, text, stable, start}
    this.listeners = [];
  }

  onChange(listener) { this.listeners.push(listener); }

  changed(what, item) { for (const listener of this.listeners) listener(what, item); }

  // `shift`: seconds to add when a new server session continues an earlier one.
  accept(event, shift = 0) {
    if (event.type === "partial") {
      this.partial = {utterance: event.utterance, text: event.text, stable: event.stable || "",
                      start: event.start + shift};
      this.changed("partial", this.partial);
    } else if (event.type === "final") {
      // The final replaces its partial whole: it may correct words the partial showed.
      if (this.partial && this.partial.utterance <= event.utterance) {
        this.partial = null;
        this.changed("partial", null);
      }
      if (!event.text) return;
      const item = {utterance: event.utterance, start: event.start + shift,
                    end: event.end + shift, text: event.text,
                    language: event.language, seq: event.seq};
      this.finals.push(item);
      this.changed("final", item);
    } else if (event.type === "end") {
      this.partial = null;
      this.changed("partial", null);
    }
  }

  clear() {
    this.finals = [];
    this.partial = null;
    this.changed("clear", null);
  }

  text() { return this.finals.map((f) => f.text).join("\n") + (this.finals.length ? "\n" : ""); }

  txt() { return this.finals.map((f) => `[${clock(f.start)}] ${f.text}`).join("\n") + "\n"; }

  srt() {
    return this.finals.map((f, i) => `${i + 1}\n${cueTime(f.start, ",")} --> `
      + `${cueTime(f.end, ",")}\n${f.text}\n`).join("\n");
  }

  vtt() {
    return "WEBVTT\n\n" + this.finals.map((f) => `${cueTime(f.start, ".")} --> `
      + `${cueTime(f.end, ".")}\n${f.text}\n`).join("\n");
  }

  json() { return JSON.stringify({finals: this.finals}, null, 2) + "\n"; }
}

export const FORMATS = {
  txt: ["txt", "text/plain"], srt: ["srt", "application/x-subrip"],
  vtt: ["vtt", "text/vtt"], json: ["json", "application/json"],
};

export function download(transcript, format, name) {
  const [extension, type] = FORMATS[format];
  const blob = new Blob([transcript[format]()], {type: `${type};charset=utf-8`});
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = `${name || "captions"}.${extension}`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

/** Shows a transcript in a list (finals) and a paragraph after it (the partial). */
export function showTranscript(transcript, list, partial, {scroller = null, follow = () => true} = {}) {
  transcript.onChange((what, item) => {
    const stick = follow();
    if (what === "clear") {
      list.replaceChildren();
      partial.replaceChildren();
    } else if (what === "final") {
      const row = document.createElement("li");
      const time = document.createElement("time");
      time.textContent = clock(item.start);
      const text = document.createElement("span");
      text.className = "text";
      text.textContent = item.text;
      row.append(time, " ", text);
      list.append(row);
    } else if (what === "partial") {
      partial.replaceChildren();
      if (item) {
        // The stable prefix stays still while the rest of the partial changes.
        const stable = item.text.startsWith(item.stable) ? item.stable : "";
        const steady = document.createElement("span");
        steady.className = "stable";
        steady.textContent = stable;
        const moving = document.createElement("span");
        moving.className = "unstable";
        moving.textContent = item.text.slice(stable.length);
        partial.append(steady, moving);
      }
    }
    partial.hidden = !transcript.partial;
    if (stick && scroller) scroller.scrollTop = scroller.scrollHeight;
  });
}

/** Delays with jitter, so that many pages do not reconnect in step. */
export class Backoff {
  constructor(first = 0.5, max = 8) { this.first = first; this.max = max; this.attempts = 0; }
  next() {
    const delay = Math.min(this.max, this.first * 2 ** this.attempts++);
    return delay * (0.5 + Math.random() * 0.5) * 1000;
  }
  reset() { this.attempts = 0; }
}

export function copyText(text, button) {
  navigator.clipboard.writeText(text).then(
    () => flash(button, "Copied"), () => flash(button, "Copy failed"));
}

function flash(button, message) {
  const label = button.textContent;
  button.textContent = message;
  setTimeout(() => { button.textContent = label; }, 1500);
}
