// The chatroom's live side: one WebSocket per conversation page.
//
// Frames from the server (JSON):
//   {type: "hello", running: [turn ids]}            after connecting: turns to ask a snapshot of
//   {type: "delta", turn, seat | final, offset, text} text appended as textContent, applied by offset
//                                                    (with reasoning: true, to the seat's folded reasoning)
//   {type: "html", turn, status, html}              server-rendered fragments swapped in by id
//   {type: "snapshot", turn, status, html}          the whole turn as it is now (replaces or appends it)
//   {type: "error", message}                        shown in the page
// Frames to the server: {type: "send", prompt, panel}, {type: "cancel", turn}, {type: "resync", turn}.
//
// Offsets count Unicode code points (as Python's len does), so text is measured with Array.from.
"use strict";

(function () {
  const room = document.querySelector(".conversation[data-ws-path]");
  const composer = document.getElementById("composer");
  const turns = document.getElementById("turns");
  const errorBox = document.getElementById("room-error");
  const sendButton = document.getElementById("send-button");
  const promptBox = document.getElementById("prompt");

  // Turns whose snapshot we wait for: their deltas and fragments are older than the snapshot, so skip them.
  const awaitingSnapshot = new Set();
  let socket = null;
  let retry = 0;
  let sending = false;
  // What was sent last: put back in the prompt box if the server refuses it, so nothing typed is lost.
  let pendingPrompt = "";

  function codePoints(text) {
    return Array.from(text).length;
  }

  function showError(message) {
    if (!errorBox) return;
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  function clearError() {
    if (errorBox) {
      errorBox.hidden = true;
      errorBox.textContent = "";
    }
  }

  function parseFragments(html) {
    const template = document.createElement("template");
    template.innerHTML = html;
    return Array.from(template.content.children);
  }

  function swap(element) {
    const current = element.id ? document.getElementById(element.id) : null;
    if (!current) return false;
    if (element.dataset.swap === "inner") {
      // Live regions are announced when their content changes, not when they are replaced.
      current.innerHTML = element.innerHTML;
    } else {
      current.replaceWith(element);
    }
    return true;
  }

  function anyRunning() {
    return turns && turns.querySelector('.turn[data-turn-status="running"]') !== null;
  }

  function updateComposer() {
    if (!sendButton) return;
    const busy = sending || anyRunning();
    sendButton.disabled = busy;
    sendButton.textContent = busy ? "Running…" : "Send";
    sendButton.setAttribute("aria-busy", busy ? "true" : "false");
  }

  function setStatus(turnId, status) {
    const turn = document.getElementById("turn-" + turnId);
    if (turn && status) turn.dataset.turnStatus = status;
  }

  function applySnapshot(frame) {
    awaitingSnapshot.delete(frame.turn);
    const [element] = parseFragments(frame.html);
    if (!element) return;
    const empty = document.getElementById("empty-state");
    if (empty) empty.remove();
    if (!swap(element)) {
      pendingPrompt = "";
      turns.appendChild(element);
      if (frame.status === "running") element.scrollIntoView({ block: "start", behavior: "smooth" });
    }
    sending = false;
    updateComposer();
  }

  function applyHtml(frame) {
    if (awaitingSnapshot.has(frame.turn)) return;
    if (!document.getElementById("turn-" + frame.turn)) {
      resync(frame.turn);
      return;
    }
    for (const element of parseFragments(frame.html)) swap(element);
    setStatus(frame.turn, frame.status);
    updateComposer();
  }

  function applyDelta(frame) {
    if (awaitingSnapshot.has(frame.turn)) return;
    const column = `turn-${frame.turn}-seat-${frame.seat}`;
    const id = frame.final
      ? `turn-${frame.turn}-final-text`
      : frame.reasoning
        ? `${column}-reasoning-text`
        : `${column}-text`;
    const target = document.getElementById(id);
    if (!target) {
      resync(frame.turn);
      return;
    }
    const have = parseInt(target.dataset.offset || "0", 10);
    if (frame.offset > have) {
      // A delta went missing: the server's snapshot puts us back on track.
      resync(frame.turn);
      return;
    }
    const chars = Array.from(frame.text);
    const fresh = chars.slice(have - frame.offset);
    if (fresh.length === 0) return;
    target.appendChild(document.createTextNode(fresh.join("")));
    target.dataset.offset = String(have + fresh.length);
    if (frame.reasoning) target.closest("details").hidden = false;
  }

  function resync(turnId) {
    if (awaitingSnapshot.has(turnId)) return;
    awaitingSnapshot.add(turnId);
    send({ type: "resync", turn: turnId });
  }

  function send(frame) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  function onMessage(event) {
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch (_) {
      return;
    }
    switch (frame.type) {
      case "delta":
        applyDelta(frame);
        break;
      case "html":
        applyHtml(frame);
        break;
      case "snapshot":
        applySnapshot(frame);
        break;
      case "hello": {
        // Ask for everything that may have moved while we were not listening.
        awaitingSnapshot.clear();
        const ids = new Set(frame.running || []);
        for (const turn of turns.querySelectorAll('.turn[data-turn-status="running"]')) {
          ids.add(parseInt(turn.dataset.turn, 10));
        }
        for (const id of ids) resync(id);
        break;
      }
      case "error":
        sending = false;
        updateComposer();
        if (pendingPrompt && promptBox && !promptBox.value) promptBox.value = pendingPrompt;
        pendingPrompt = "";
        showError(frame.message);
        if (promptBox) promptBox.focus();
        break;
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + room.dataset.wsPath);
    socket.addEventListener("open", () => {
      retry = 0;
      room.dataset.socket = "open";
    });
    socket.addEventListener("message", onMessage);
    socket.addEventListener("close", (event) => {
      room.dataset.socket = "closed";
      sending = false;
      updateComposer();
      if (event.code === 4401 || event.code === 4404) {
        showError("This conversation is not available: log in again or pick another conversation.");
        return;
      }
      // Back off, with jitter, up to 15 s between attempts.
      const delay = Math.min(15000, 500 * 2 ** retry) * (0.5 + Math.random() / 2);
      retry += 1;
      setTimeout(connect, delay);
    });
  }

  function onSubmit(event) {
    if (!room || !socket || socket.readyState !== WebSocket.OPEN) return; // plain form post instead
    event.preventDefault();
    if (sending || anyRunning()) return;
    const prompt = promptBox.value;
    if (!prompt.trim()) {
      showError("Type a prompt first: an empty message cannot be sent.");
      return;
    }
    const panel = parseInt(composer.elements.panel.value, 10);
    clearError();
    sending = true;
    updateComposer();
    if (send({ type: "send", prompt: prompt, panel: panel })) {
      pendingPrompt = prompt;
      promptBox.value = "";
    } else {
      sending = false;
      updateComposer();
    }
  }

  if (composer) {
    composer.addEventListener("submit", onSubmit);
    promptBox.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        composer.requestSubmit();
      }
    });
    composer.addEventListener("submit", () => {
      // A plain post: show it is going out and refuse a second click.
      if (!room || !socket || socket.readyState !== WebSocket.OPEN) {
        setTimeout(() => {
          sendButton.disabled = true;
          sendButton.textContent = "Sending…";
        }, 0);
      }
    });
  }

  document.addEventListener("click", (event) => {
    const cancel = event.target.closest("[data-cancel-turn]");
    if (!cancel) return;
    cancel.disabled = true;
    cancel.textContent = "Cancelling…";
    if (!send({ type: "cancel", turn: parseInt(cancel.dataset.cancelTurn, 10) })) {
      cancel.disabled = false;
      cancel.textContent = "Cancel";
      showError("Not connected: try again in a moment.");
    }
  });

  // Escape in a conversation's title field gives up the rename.
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || !(event.target instanceof Element)) return;
    const form = event.target.closest(".rename-form");
    const cancel = form && form.querySelector("[data-rename-cancel]");
    if (cancel) {
      event.preventDefault();
      cancel.click();
    }
  });

  if (room) connect();
  updateComposer();
})();
