// The captioning page: capture a microphone or a tab, stream it, show and keep the captions.
"use strict";

import {Transcript, copyText, describeError, download, getJson, pageUrl, query, say,
        showTranscript} from "./captions.js";
import {Stream} from "./stream.js";

const $ = (id) => document.getElementById(id);
const MAX_RATE = 48000;  // the protocol's highest sample_rate
const LANGUAGES = ["en", "es", "fr", "de", "it", "pt", "nl", "pl", "ru", "uk", "tr", "ar",
                   "hi", "ja", "ko", "zh", "sv", "da", "fi", "no", "cs", "el", "he", "id", "vi"];
const transcript = new Transcript();
let capture = null;  // {stream, context, media, node}

showTranscript(transcript, $("finals"), $("partial"), {scroller: $("captions")});
transcript.onChange(() => showEmpty());

/** The captions pane before its first caption: what it waits for, and what to do. */
function showEmpty() {
  const empty = $("empty");
  empty.hidden = transcript.finals.length > 0 || Boolean(transcript.partial);
  if (empty.hidden) return;
  const state = document.body.dataset.state;
  const tab = new FormData($("setup")).get("source") === "tab";
  if (["live", "connecting", "resuming", "reconnecting"].includes(state)) {
    say(empty, tab ? "Listening to the shared tab: its speech appears here, each sentence as it "
                     + "is said."
                   : "Listening: speak, and your words appear here as you say them; each "
                     + "sentence is settled when you pause.");
  } else {
    say(empty, "Captions appear here. Press ", {strong: "Start"}, tab
      ? " and pick the tab to caption (tick “Share tab audio”)."
      : " and speak: the browser asks to use your microphone.",
      " Your readers follow along on the reader page: its link is under “Share the channel”.");
  }
}

function setState(state, detail = "") {
  document.body.dataset.state = state;
  const words = {connecting: "Connecting…", live: "Captioning", resuming: "Reconnecting…",
                 reconnecting: "Connection lost: reconnecting, your audio is kept",
                 finishing: "Finishing the last captions…", ended: "Stopped",
                 refused: "Stopped", idle: ""};
  $("state").textContent = [words[state], detail].filter(Boolean).join(": ");
  const busy = !["idle", "ended", "refused"].includes(state);
  $("start").disabled = busy;
  $("stop").disabled = !busy || state === "finishing";
  for (const field of $("setup").querySelectorAll("input, select, textarea")) {
    if (field.id !== "share-token") field.disabled = busy;
  }
  if (!busy) applyHealth(lastHealth);
  showEmpty();
}

function showMessage(text) {
  $("message").textContent = text;
  $("message").hidden = !text;
}

let lastHealth = {};
function applyHealth(health) {
  lastHealth = health;
  const multilingual = Boolean(health.multilingual);
  $("translate").disabled = !multilingual;
  $("language").disabled = !multilingual;
}

async function checkHealth() {
  try {
    const {status, body} = await getJson("healthz", $("token").value);
    const parts = [status === 200 ? "ready" : body.status || `HTTP ${status}`];
    if (body.model) parts.push(`model ${body.model}`);
    if ("multilingual" in body) parts.push(body.multilingual ? "many languages" : "English only");
    if (typeof body.load === "number") parts.push(`load ${Math.round(body.load * 100)}%`);
    if ("sessions" in body) parts.push(`${body.sessions}/${body.max_sessions} streams`);
    $("health").textContent = parts.join(" · ");
    if ("multilingual" in body && !$("language").options.length) fillLanguages(body.multilingual);
    if ("multilingual" in body) applyHealth(body);
  } catch {
    $("health").textContent = "the server does not answer";
  }
}

function fillLanguages(multilingual) {
  const names = new Intl.DisplayNames([navigator.language || "en"], {type: "language"});
  const codes = multilingual ? ["auto", ...LANGUAGES] : ["en"];
  for (const code of codes) {
    const name = code === "auto" ? "Detect each sentence" : names.of(code);
    $("language").append(new Option(`${name} (${code})`, code));
  }
  const wanted = query.get("language");
  if (wanted && codes.includes(wanted)) $("language").value = wanted;
}

async function listDevices() {
  if (!navigator.mediaDevices?.enumerateDevices) return;
  const devices = (await navigator.mediaDevices.enumerateDevices())
    .filter((d) => d.kind === "audioinput" && d.deviceId !== "default");
  const chosen = $("device").value;
  $("device").replaceChildren(new Option("default microphone", ""), ...devices.map(
    (d, i) => new Option(d.label || `microphone ${i + 1}`, d.deviceId)));
  $("device").value = devices.some((d) => d.deviceId === chosen) ? chosen : "";
}

function mediaError(error, source) {
  const what = source === "tab" ? "tab or screen sharing" : "the microphone";
  switch (error.name) {
    case "NotAllowedError": return source === "tab"
      ? "Sharing was cancelled or blocked: press Start and pick a tab, with \"Share tab audio\" on."
      : "Microphone permission was denied: allow the microphone for this site (the icon in the "
        + "address bar), then press Start again.";
    case "NotFoundError": return "No microphone found: plug one in, or choose another device.";
    case "NotReadableError": return `The browser could not open ${what}: another program may be `
      + "using it.";
    case "OverconstrainedError": return "That microphone is gone: choose another device.";
    default: return `Could not start ${what}: ${error.message || error.name}`;
  }
}

async function openSource(source) {
  if (!window.isSecureContext) {
    throw new Error("This page is not a secure context, so the browser will not share audio "
      + "with it. Open it as http://localhost:PORT/ on this computer, or serve TLS "
      + "(captioncast serve --certfile cert.pem --keyfile key.pem) and open https://…");
  }
  if (source === "tab") {
    if (!navigator.mediaDevices?.getDisplayMedia) throw new Error("This browser cannot share a tab's audio.");
    const media = await navigator.mediaDevices.getDisplayMedia({video: true, audio: true});
    if (!media.getAudioTracks().length) {
      for (const track of media.getTracks()) track.stop();
      throw new Error("No audio was shared: share a tab (or the whole screen) with \"Share "
        + "audio\" turned on.");
    }
    return media;
  }
  const device = $("device").value;
  return navigator.mediaDevices.getUserMedia({
    audio: {deviceId: device ? {exact: device} : undefined, channelCount: 1}});
}

function streamParams() {
  return {
    language: $("language").disabled ? null : $("language").value,
    task: $("translate").checked && !$("translate").disabled ? "translate" : null,
    channel: $("channel").value.trim(),
    prompt: $("prompt").value.trim(),
    interim: $("partials").checked ? null : "false",
    diarize: $("diarize").checked ? "true" : null,
    token: $("token").value,
  };
}

async function start() {
  showMessage("");
  const source = new FormData($("setup")).get("source");
  if ($("channel").value && !$("channel").checkValidity()) {
    showMessage("A channel name is 1 to 64 letters, digits, dots, dashes or underscores.");
    return;
  }
  setState("connecting");
  let media;
  try {
    media = await openSource(source);
  } catch (error) {
    setState("idle");
    showMessage(error.name && error.name !== "Error" ? mediaError(error, source) : error.message);
    return;
  }
  listDevices();
  let context, node;
  try {
    ({context, node} = await audioGraph(media));
  } catch (error) {
    for (const track of media.getTracks()) track.stop();
    setState("idle");
    showMessage(`This browser could not process the audio: ${error.message || error.name}`);
    return;
  }
  const stream = new Stream({
    params: streamParams(), sampleRate: context.sampleRate,
    onEvent: (event, shift) => {
      if (event.type === "error") showMessage(describeError(event));
      else transcript.accept(event, shift);
    },
    onState: (state, detail) => {
      if (state === "refused") {
        showMessage(describeError(detail));
        release();
      }
      if (state === "ended" || state === "refused") capture = null;
      setState(state, typeof detail === "string" ? detail : "");
    },
  });
  node.port.onmessage = (msg) => stream.add(msg.data);
  // on a phone the captions are below the options: bring them up
  if (matchMedia("(max-width: 720px)").matches) $("captions").scrollIntoView({block: "start"});
  capture = {stream, context, media, node};
  // the user stopped sharing, or the device went away
  for (const track of media.getAudioTracks()) track.addEventListener("ended", stop);
  window.captioncast = {stream, transcript};  // for the curious, and for the browser tests
}

async function audioGraph(media) {
  let context = new AudioContext();
  if (context.sampleRate > MAX_RATE) {
    await context.close();
    context = new AudioContext({sampleRate: MAX_RATE});
  }
  await context.audioWorklet.addModule("static/capture-worklet.js");
  const node = new AudioWorkletNode(context, "captioncast-capture");
  const mute = context.createGain();
  mute.gain.value = 0;  // pulled by the destination, so the worklet runs; heard by nobody
  context.createMediaStreamSource(media).connect(node).connect(mute).connect(context.destination);
  return {context, node};
}

function release() {
  if (!capture) return;
  for (const track of capture.media.getTracks()) track.stop();
  capture.context.close();
}

async function stop() {
  if (!capture || capture.stopping) return;
  capture.stopping = true;
  capture.node.port.postMessage("flush");
  // the worklet's last frame arrives on the next message turn
  await new Promise((resolve) => setTimeout(resolve, 100));
  release();
  capture.stream.stop();
}

function shareLinks() {
  const channel = $("channel").value.trim();
  const token = $("share-token").checked ? $("token").value : "";
  const links = [
    ["Reader page", "watch", {channel}],
    ["OBS overlay", "overlay", {channel}],
    ["Live SRT", `v1/channels/${encodeURIComponent(channel)}/captions.srt`, {}],
    ["Live VTT", `v1/channels/${encodeURIComponent(channel)}/captions.vtt`, {}],
  ];
  $("links").replaceChildren(...links.map(([label, path, params]) => {
    const url = pageUrl(path, {...params, token}).toString();
    const row = document.createElement("li");
    const link = Object.assign(document.createElement("a"), {href: url, textContent: url,
                                                             target: "_blank", rel: "noreferrer"});
    const copy = Object.assign(document.createElement("button"), {type: "button",
                                                                  textContent: "Copy"});
    copy.addEventListener("click", () => copyText(url, copy));
    row.append(`${label}: `, link, " ", copy);
    return row;
  }));
}

function init() {
  $("token").value = query.get("token") || "";
  $("channel").value = query.get("channel") || `live-${Math.random().toString(36).slice(2, 8)}`;
  if (query.get("prompt")) $("prompt").value = query.get("prompt");
  for (const radio of document.querySelectorAll("input[name=source]")) {
    radio.addEventListener("change", () => {
      $("device-row").hidden = new FormData($("setup")).get("source") !== "mic";
      showEmpty();
    });
  }
  $("setup").addEventListener("submit", (event) => { event.preventDefault(); start(); });
  $("stop").addEventListener("click", stop);
  $("copy").addEventListener("click", () => copyText(transcript.text(), $("copy")));
  $("clear").addEventListener("click", () => transcript.clear());
  for (const button of document.querySelectorAll("[data-download]")) {
    button.addEventListener("click", () => download(transcript, button.dataset.download,
                                                    $("channel").value || "captions"));
  }
  for (const id of ["channel", "token", "share-token"]) $(id).addEventListener("input", shareLinks);
  $("token").addEventListener("change", checkHealth);
  navigator.mediaDevices?.addEventListener?.("devicechange", listDevices);
  shareLinks();
  listDevices();
  checkHealth();
  setInterval(checkHealth, 10000);
  if (!window.isSecureContext) {
    showMessage("This page is not a secure context (https or localhost): the browser will not "
      + "let it capture audio. Serve TLS (captioncast serve --certfile … --keyfile …) or open it "
      + "on localhost.");
  }
  setState("idle");
}

init();
