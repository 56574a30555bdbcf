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

// Speakers (protocol "Speakers"): a final keeps the label it was given (S1, S2…); the
// newest speakers table names labels and merges them (same_as), for earlier lines too.

/** The label `label` is, following merges to their end. */
export function resolveSpeaker(table, label) {
  const entries = new Map((table ? table.speakers : []).map((e) => [e.id, e]));
  const seen = new Set([label]);
  let entry = entries.get(label);
  while (entry && entry.same_as && !seen.has(entry.same_as)) {
    label = entry.same_as;
    seen.add(label);
    entry = entries.get(label);
  }
  return label;
}

/** What a page calls the voice `label`: its (merged) name, the final's own name, its label. */
export function speakerName(table, label, fallback = null) {
  const voice = resolveSpeaker(table, label);
  const entry = (table ? table.speakers : []).find((e) => e.id === voice && e.name);
  return entry ? entry.name : fallback || voice;
}

/** A hue per voice that stays put: S1, S2… spread by the golden angle, other labels hashed. */
export function speakerHue(voice) {
  const number = /^S(\d+)$/.exec(voice);
  let n = number ? Number(number[1]) - 1 : 0;
  if (!number) for (const c of voice) n = (n * 31 + c.charCodeAt(0)) % 997;
  return Math.round((n * 137.508 + 210) % 360);
}

/** The finals so far, in order, and the partial after them. */
export class Transcript {
  constructor() {
    this.finals = [];  // {start, end, text, language, seq, speaker, speakerName}; no empty ones
    this.partial = null;  // {utterance, text, stable, start, speaker}
    this.speakers = null;  // the newest speakers event: names and merges
    this.listeners = [];
  }

  /** The name to show before final `i`, or null when its voice goes on from the one before. */
  turnAt(i) {
    const final = this.finals[i];
    if (!final || !final.speaker) return null;
    const voice = resolveSpeaker(this.speakers, final.speaker);
    const before = this.finals[i - 1];
    if (before && before.speaker && resolveSpeaker(this.speakers, before.speaker) === voice) return null;
    return speakerName(this.speakers, final.speaker, final.speakerName);
  }

  /** `Alice: ` where the speaker changes (files without markup), else nothing. */
  lead(i) {
    const name = this.turnAt(i);
    return name ? `${name}: ` : "";
  }

  onChange(listener) { this.listeners.push(listener); }

  changed(what, item) { for (const listener of this.listeners) listener(what, item); }

  // `shift`: seconds to add when a new server session continues an earlier one.
  accept(event, shift = 0) {
    if (event.type === "partial") {
      this.partial = {utterance: event.utterance, text: event.text, stable: event.stable || "",
                      start: event.start + shift, speaker: event.speaker || null};
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
                    language: event.language, seq: event.seq,
                    speaker: event.speaker || null, speakerName: event.speaker_name || null};
      this.finals.push(item);
      this.changed("final", item);
    } else if (event.type === "end") {
      this.partial = null;
      this.changed("partial", null);
    } else if (event.type === "speakers") {
      this.speakers = event;
      this.changed("speakers", event);
    }
  }

  clear() {
    this.finals = [];
    this.partial = null;
    this.changed("clear", null);
  }

  text() { return this.finals.map((f) => f.text).join("\n") + (this.finals.length ? "\n" : ""); }

  txt() {
    return this.finals.map((f, i) => `[${clock(f.start)}] ${this.lead(i)}${f.text}`).join("\n") + "\n";
  }

  srt() {
    return this.finals.map((f, i) => `${i + 1}\n${cueTime(f.start, ",")} --> `
      + `${cueTime(f.end, ",")}\n${this.lead(i)}${f.text}\n`).join("\n");
  }

  vtt() {
    const escape = (text) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
    // A voice span on every cue, as the server's files have: WebVTT players style by voice.
    const body = (f) => (f.speaker
      ? `<v ${escape(speakerName(this.speakers, f.speaker, f.speakerName))}>${escape(f.text)}` : f.text);
    return "WEBVTT\n\n" + this.finals.map((f) => `${cueTime(f.start, ".")} --> `
      + `${cueTime(f.end, ".")}\n${body(f)}\n`).join("\n");
  }

  json() {
    const out = {finals: this.finals};
    if (this.speakers) out.speakers = this.speakers.speakers;
    return JSON.stringify(out, null, 2) + "\n";
  }
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

/** Names the speaker of a final's row where the voice changes, in the voice's colour.
 * `rename(voice, nameElement)`: where given, the name is a button that renames the voice. */
function paintSpeaker(transcript, row, i, rename) {
  const final = transcript.finals[i];
  row.querySelector(".speaker")?.remove();
  if (!final || !final.speaker) return;
  const voice = resolveSpeaker(transcript.speakers, final.speaker);
  row.dataset.speaker = voice;
  row.style.setProperty("--speaker-hue", String(speakerHue(voice)));
  row.classList.add("spoken");
  const name = transcript.turnAt(i);
  if (name === null) return;
  const tag = document.createElement(rename ? "button" : "span");
  tag.className = "speaker";
  tag.textContent = name;
  if (rename) {
    tag.type = "button";
    tag.title = `Rename ${name}`;
    tag.addEventListener("click", () => rename(voice, tag));
  }
  row.querySelector(".text").before(tag, " ");
}

/** Shows a transcript in a list (finals) and a paragraph after it (the partial). */
export function showTranscript(transcript, list, partial,
                               {scroller = null, follow = () => true, rename = null} = {}) {
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
      paintSpeaker(transcript, row, transcript.finals.length - 1, rename);
    } else if (what === "speakers") {
      // A name or a merge learned now applies to every line shown so far.
      [...list.children].forEach((row, i) => paintSpeaker(transcript, row, i, rename));
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
