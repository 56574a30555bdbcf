// The reader page: a channel's whole running transcript, live, for people and screen readers.
"use strict";

import {Backoff, Transcript, ago, describeError, download, getJson, pageUrl, query, say,
        showTranscript, socketUrl} from "./captions.js";

const $ = (id) => document.getElementById(id);
const NEAR_BOTTOM_PX = 48;  // closer than this to the end: the reader is following
const SIZES = [14, 16, 18, 20, 24, 28, 32, 40, 48];
const transcript = new Transcript();
const backoff = new Backoff();
const channel = query.get("channel") || "";
const token = query.get("token") || "";
let lastSeq = 0;  // since=0: replay everything the server still holds
let socket = null;

const scroller = document.scrollingElement;
const following = () =>
  scroller.scrollHeight - scroller.scrollTop - window.innerHeight < NEAR_BOTTOM_PX;
// Whoever holds the server's token may name a voice; everyone else just reads the names.
showTranscript(transcript, $("finals"), $("partial"),
               {scroller, follow: following, rename: token ? renameSpeaker : null});
transcript.onChange((what, item) => {
  $("empty").hidden = transcript.finals.length > 0 || Boolean(transcript.partial);
  if (what === "final") {
    filterRow($("finals").lastElementChild);
    if (!following()) $("follow").hidden = false;
  }
});

function showMessage(text) {
  $("message").hidden = false;
  $("message").textContent = text;
}

/** An input in place of the name: Enter names the voice on the server, Escape keeps it. The
 * server answers with a speakers event to every viewer, this one included, which shows it. */
function renameSpeaker(voice, tag) {
  const input = Object.assign(document.createElement("input"), {
    className: "rename", value: tag.textContent, required: true, maxLength: 64});
  input.setAttribute("aria-label", `New name for ${tag.textContent}`);
  let done = false;
  const finish = async (save) => {
    if (done) return;
    done = true;
    const name = input.value.trim();
    input.replaceWith(tag);
    if (!save || !name || name === tag.textContent) return;
    tag.textContent = name;  // until the speakers event confirms it
    try {
      const response = await fetch(pageUrl(`v1/channels/${encodeURIComponent(channel)}/speakers/`
                                            + encodeURIComponent(voice)), {
        method: "PUT", cache: "no-store", body: JSON.stringify({name}),
        headers: {"Content-Type": "application/json", Authorization: `Bearer ${token}`}});
      if (!response.ok) {
        let detail = "";
        try { detail = (await response.json()).message || ""; } catch { /* not JSON */ }
        showMessage(`Could not rename ${voice} (${response.status}${detail ? `: ${detail}` : ""}).`);
        transcript.changed("speakers", transcript.speakers);  // back to the names it has
      }
    } catch {
      showMessage(`Could not rename ${voice}: the server did not answer.`);
      transcript.changed("speakers", transcript.speakers);
    }
  };
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") { event.preventDefault(); finish(true); }
    if (event.key === "Escape") finish(false);
  });
  input.addEventListener("blur", () => finish(true));
  tag.replaceWith(input);
  input.focus();
  input.select();
}

function setState(state, text) {
  document.body.dataset.state = state;
  $("state").textContent = text;
}

/** The server's entry for this channel; null: nobody has spoken on it; undefined: unknown. */
async function channelInfo() {
  try {
    const {status, body} = await getJson("v1/channels", token);
    if (status !== 200) return undefined;
    const found = body.channels.find((c) => c.channel === channel);
    if (found) return found;
    return body.next_after ? undefined : null;  // a later page may hold it
  } catch {
    return undefined;
  }
}

/** Before the first caption, or after a speaker stops: who speaks, and what happens next. */
async function describeChannel() {
  const info = await channelInfo();
  if (transcript.partial || document.body.dataset.state !== "open") return;  // someone spoke
  const live = info && (info.live || info.live_elsewhere);
  const speak = ["To speak on it, open the ", {link: "captioning page", href: pageUrl("./", {channel, token})},
                 " with this channel and press Start, or run ",
                 {code: `captioncast mic --channel ${channel}`}, "."];
  if (live) {
    setState("open", `Live: ${channel}`);
    say($("empty"), `Someone is speaking on “${channel}”: their words appear here in a moment.`);
  } else if (info === null) {
    setState("open", `${channel}: nobody is speaking yet`);
    say($("empty"), `Nobody is speaking on “${channel}” yet. Keep this page open: captions appear `
      + "here by themselves as soon as someone does, and this link is the one to share with "
      + "your readers. ", ...speak);
  } else if (info === undefined) {  // the server did not say (a token, a later page)
    setState("open", `Connected to ${channel}`);
    say($("empty"), `Waiting for captions on “${channel}”: they appear here by themselves as `
      + "soon as someone speaks on it. ", ...speak);
  } else {
    const when = info.last_active ? ` (last caption ${ago(info.last_active)})` : "";
    setState("open", `${channel}: nobody is speaking now${when}`);
    say($("empty"), `Nobody is speaking on “${channel}” now${when}. New captions appear here `
      + "by themselves when someone speaks on it again. ", ...speak);
  }
}

function connect() {
  const ws = new WebSocket(socketUrl("v1/captions", {channel, since: lastSeq, token}));
  socket = ws;
  window.captioncast = {transcript, socket};
  ws.onopen = () => {
    backoff.reset();
    setState("open", `Connected to ${channel}`);
    describeChannel();
  };
  ws.onmessage = (msg) => {
    const event = JSON.parse(msg.data);
    if (event.type === "error") { $("message").hidden = false; $("message").textContent = describeError(event); return; }
    // A speakers table replaces the last one whatever its seq: the server says it first
    // on a (re)connect, before the finals numbered below it.
    const ordered = event.type !== "partial" && event.type !== "speakers";
    if (ordered && event.seq <= lastSeq) return;  // replayed: already shown
    if (ordered) lastSeq = event.seq;
    transcript.accept(event);
    if (event.type === "partial") setState("open", `Live: ${channel}`);
    if (event.type === "end") describeChannel();
  };
  ws.onclose = (close) => {
    if (ws !== socket) return;
    setState("closed", "Connection lost: reconnecting…");
    if (close.code === 4001) {
      $("message").hidden = false;
      $("message").textContent = "The server refused the token: open this page with ?token=….";
      return;
    }
    setTimeout(connect, backoff.next());
  };
}

function filterRow(row) {
  const needle = $("search").value.trim().toLowerCase();
  if (row) row.hidden = Boolean(needle) && !row.textContent.toLowerCase().includes(needle);
}

function setSize(step) {
  const now = Number(localStorage.getItem("captioncast.size") || 20);
  const index = Math.max(0, Math.min(SIZES.length - 1, SIZES.indexOf(now) + step));
  const size = SIZES[index === -1 ? 3 : index];
  document.documentElement.style.setProperty("--reading-size", `${size}px`);
  localStorage.setItem("captioncast.size", String(size));
}

function toggle(button, className, key) {
  const on = document.body.classList.toggle(className);
  button.setAttribute("aria-pressed", String(on));
  localStorage.setItem(key, on ? "1" : "");
}

async function listChannels() {
  $("pick").hidden = false;
  $("token").value = token;
  $("pick").addEventListener("submit", (event) => {
    event.preventDefault();
    location.href = pageUrl("watch", {channel: $("channel").value, token: $("token").value});
  });
  const {status, body} = await getJson("v1/channels", token);
  if (status !== 200) return;
  const live = (c) => Boolean(c.live || c.live_elsewhere);
  // live first, then the most recently active
  const channels = [...body.channels].sort((a, b) => (live(b) - live(a))
    || ((b.last_active || 0) - (a.last_active || 0)) || a.channel.localeCompare(b.channel));
  $("none").hidden = channels.length > 0;
  say($("none"), "No channels yet. A channel starts when someone speaks on it: open the ",
      {link: "captioning page", href: pageUrl("./", {token})}, " and press Start, or run ",
      {code: "captioncast mic --channel NAME"}, ". Its name then appears here, or type it above.");
  $("channels").replaceChildren(...channels.map((c) => {
    const row = document.createElement("li");
    const link = Object.assign(document.createElement("a"), {
      href: pageUrl("watch", {channel: c.channel, token}), textContent: c.channel});
    const state = Object.assign(document.createElement("span"), {
      className: live(c) ? "live" : "ended", textContent: live(c) ? "live" : "ended"});
    const when = c.last_active ? `, last caption ${ago(c.last_active)}` : "";
    row.append(link, " ", state, when);
    return row;
  }));
}

function init() {
  if (!channel) {
    setState("idle", "Choose a channel to read: live ones first");
    listChannels();
    return;
  }
  document.title = `${channel}: captioncast reader`;
  $("title").textContent = channel;
  $("tools").hidden = false;
  $("captions").hidden = false;
  if (localStorage.getItem("captioncast.dark") ?? matchMedia("(prefers-color-scheme: dark)").matches) {
    toggle($("theme"), "dark", "captioncast.dark");
  }
  if (localStorage.getItem("captioncast.contrast")) toggle($("contrast"), "contrast", "captioncast.contrast");
  setSize(0);
  $("smaller").addEventListener("click", () => setSize(-1));
  $("larger").addEventListener("click", () => setSize(1));
  $("theme").addEventListener("click", () => toggle($("theme"), "dark", "captioncast.dark"));
  $("contrast").addEventListener("click", () => toggle($("contrast"), "contrast", "captioncast.contrast"));
  $("search").addEventListener("input", () => { for (const row of $("finals").children) filterRow(row); });
  $("follow").addEventListener("click", () => {
    scroller.scrollTop = scroller.scrollHeight;
    $("follow").hidden = true;
  });
  window.addEventListener("scroll", () => { if (following()) $("follow").hidden = true; });
  for (const button of document.querySelectorAll("[data-download]")) {
    button.addEventListener("click", () => download(transcript, button.dataset.download, channel));
  }
  setState("connecting", "Connecting…");
  connect();
}

init();
