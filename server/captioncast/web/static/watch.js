// The reader page: a channel's whole running transcript, live, for people and screen readers.
"use strict";

import {Backoff, Transcript, describeError, download, getJson, pageUrl, query, showTranscript,
        socketUrl} from "./captions.js";

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
showTranscript(transcript, $("finals"), $("partial"), {scroller, follow: following});
transcript.onChange((what, item) => {
  if (what === "final") {
    filterRow($("finals").lastElementChild);
    if (!following()) $("follow").hidden = false;
  }
});

function setState(state, text) {
  document.body.dataset.state = state;
  $("state").textContent = text;
}

function connect() {
  const ws = new WebSocket(socketUrl("v1/captions", {channel, since: lastSeq, token}));
  socket = ws;
  window.captioncast = {transcript, socket};
  ws.onopen = () => { backoff.reset(); setState("open", `Live: ${channel}`); };
  ws.onmessage = (msg) => {
    const event = JSON.parse(msg.data);
    if (event.type === "error") { $("message").hidden = false; $("message").textContent = describeError(event); return; }
    if (event.type !== "partial" && event.seq <= lastSeq) return;  // replayed: already shown
    if (event.type !== "partial") lastSeq = event.seq;
    transcript.accept(event);
    if (event.type === "end") setState("open", `${channel}: the speaker stopped; waiting for more`);
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
  $("channels").replaceChildren(...body.channels.map((c) => {
    const row = document.createElement("li");
    const link = Object.assign(document.createElement("a"), {
      href: pageUrl("watch", {channel: c.channel, token}), textContent: c.channel});
    row.append(link, c.live ? " (live)" : "");
    return row;
  }));
}

function init() {
  if (!channel) {
    setState("idle", "Choose a channel to read");
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
