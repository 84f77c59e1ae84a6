// The chatroom's live side: one WebSocket per conversation page.
//
// Frames from the server (JSON):
//   {type: "hello", running: [turn ids]}            after connecting: turns to ask a snapshot of
//   {type: "deltas", deltas: [{turn, seat | final, offset, text}, ...]}
//                                                    text appended to the live text's Markdown source, each
//                                                    delta applied by offset, in order (with reasoning: true,
//                                                    to the seat's folded reasoning); one per column that
//                                                    moved. static/js/render.js renders the source as it grows.
//   {type: "html", turn, status, html}              server-rendered fragments swapped in by id
//   {type: "snapshot", turn, status, html}          the whole turn as it is now (replaces or appends it)
//   {type: "error", message}                        shown in the page
// Frames to the server: {type: "send", prompt, panel}, {type: "cancel", turn}, {type: "resync", turn}, and
// those of turn_actions.js (a "room:send" event): regenerate, edit, retry and version.
//
// Offsets count Unicode code points (as Python's len does), so text is measured with Array.from.
//
// Sizes: a prompt over the limit is refused here, with the server's words, and stays in the box; no frame
// larger than the server's frame limit (data-max-frame-bytes, in UTF-8 bytes) is ever sent, because Daphne
// drops the connection on a message over its own limit (1 MiB) instead of answering. A socket that closes
// anyway says so in the page ("Connection lost, reconnecting…") and reconnects with backoff.
"use strict";

(function () {
  const room = document.querySelector(".conversation[data-ws-path]");
  const composer = document.getElementById("composer");
  const turns = document.getElementById("turns");
  const errorBox = document.getElementById("room-error");
  const sendButton = document.getElementById("send-button");
  const stopButton = document.getElementById("stop-button");
  const promptBox = document.getElementById("prompt");
  const connectionBox = document.getElementById("connection-status");
  const limits = composer ? composer.dataset : {};
  const maxPromptChars = parseInt(limits.maxPromptChars || "0", 10);
  const maxFrameBytes = parseInt(limits.maxFrameBytes || "0", 10);
  // A prompt lost in flight above this size may have been refused for its size.
  const LARGE_PROMPT_KIB = 64;

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

  function utf8Bytes(text) {
    // At most 3 bytes per UTF-16 unit: most frames are measured without encoding them.
    if (text.length * 3 <= maxFrameBytes) return text.length;
    return new TextEncoder().encode(text).length;
  }

  function formatCount(number) {
    return number.toLocaleString("en-US");
  }

  // The server's own refusal (apps/chat/services.prompt_clean), said before a byte is sent.
  function promptRefusal(prompt) {
    if (!maxPromptChars || prompt.length <= maxPromptChars) return "";
    const length = codePoints(prompt.trim());
    if (length <= maxPromptChars) return "";
    return (
      `That prompt is ${formatCount(length)} characters long; the limit is ${formatCount(maxPromptChars)}. ` +
      "Shorten it and send again."
    );
  }

  function showConnection(message) {
    if (!connectionBox) return;
    connectionBox.textContent = message;
    connectionBox.hidden = false;
  }

  function clearConnection() {
    if (connectionBox) {
      connectionBox.hidden = true;
      connectionBox.textContent = "";
    }
  }

  // A prompt sent but not yet taken up by the server goes back in the box when the send fails.
  function restorePrompt() {
    if (pendingPrompt && promptBox && !promptBox.value) promptBox.value = pendingPrompt;
    pendingPrompt = "";
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

  function runningTurnIds() {
    if (!turns) return [];
    return Array.from(turns.querySelectorAll('.turn[data-turn-status="running"]'), (turn) =>
      parseInt(turn.dataset.turn, 10),
    );
  }

  // Stop takes Send's place while a run goes (same spot, so the eye and the pointer find it); before the
  // server confirms a send, Send says it is going out.
  function updateComposer() {
    if (!sendButton) return;
    const running = runningTurnIds();
    const busy = sending || running.length > 0;
    const stopHadFocus = stopButton !== null && document.activeElement === stopButton;
    sendButton.hidden = running.length > 0;
    sendButton.disabled = busy;
    sendButton.textContent = sending && running.length === 0 ? "Sending…" : "Send";
    sendButton.setAttribute("aria-busy", busy ? "true" : "false");
    if (!stopButton) return;
    for (const id of stopping) if (!running.includes(id)) stopping.delete(id);
    const pending = running.length > 0 && running.every((id) => stopping.has(id));
    stopButton.hidden = running.length === 0;
    // Not disabled: a disabled button drops focus, and focus should come back to the prompt afterwards.
    stopButton.setAttribute("aria-disabled", pending ? "true" : "false");
    stopButton.textContent = pending ? "Stopping…" : "Stop";
    // A hidden button drops focus to the page: the prompt is where the next thing happens.
    if (stopHadFocus && running.length === 0 && promptBox) promptBox.focus();
  }

  // Turns a cancel was sent for: Stop says "Stopping…" until they end.
  const stopping = new Set();

  function stopRun() {
    const ids = runningTurnIds().filter((id) => !stopping.has(id));
    for (const id of ids) {
      if (!send({ type: "cancel", turn: id })) {
        showError("Not connected: try again in a moment.");
        break;
      }
      stopping.add(id);
    }
    updateComposer();
  }

  function setStatus(turnId, status) {
    const turn = document.getElementById("turn-" + turnId);
    if (turn && status) turn.dataset.turnStatus = status;
  }

  // Live texts arrive as raw Markdown from the server (a snapshot, a column that starts): render them here.
  function renderLive(element) {
    if (window.FusionMarkdown) window.FusionMarkdown.renderLive(element);
  }

  // Text goes to the live text's Markdown source (render.js); as plain text when render.js did not load.
  function appendText(target, text) {
    if (window.FusionMarkdown && window.FusionMarkdown.append(target, text)) return;
    target.appendChild(document.createTextNode(text));
  }

  // A finished column or turn replaces the live one: keep what the reader did there (an opened reasoning
  // fold, a scrolled column), so the swap to the server's HTML moves nothing.
  const VIEW_KEPT = "details.reasoning, .column-body, .reasoning-text";

  function viewKey(element) {
    const owner = element.closest("[data-seat], [data-section]");
    const kind = element.matches(".column-body") ? "body" : element.localName === "details" ? "fold" : "text";
    return `${owner ? owner.id : ""} ${kind}`;
  }

  function viewState(root) {
    const state = new Map();
    for (const element of root.querySelectorAll(VIEW_KEPT)) {
      state.set(viewKey(element), element.localName === "details" ? element.open : element.scrollTop);
    }
    return state;
  }

  function viewRestore(root, state) {
    if (state.size === 0) return;
    for (const element of root.querySelectorAll(VIEW_KEPT)) {
      const key = viewKey(element);
      if (!state.has(key)) continue;
      if (element.localName === "details") element.open = element.open || state.get(key);
      else if (state.get(key) > 0) element.scrollTop = state.get(key);
    }
  }

  function swapKeepingView(element) {
    const current = element.id ? document.getElementById(element.id) : null;
    const state = current ? viewState(current) : new Map();
    if (!swap(element)) return false;
    const placed = document.getElementById(element.id);
    if (placed) {
      renderLive(placed);
      viewRestore(placed, state);
    }
    return true;
  }

  function applySnapshot(frame) {
    awaitingSnapshot.delete(frame.turn);
    const [element] = parseFragments(frame.html);
    if (!element) return;
    const empty = document.getElementById("empty-state");
    if (empty) empty.remove();
    if (!swapKeepingView(element)) {
      pendingPrompt = "";
      // Another version of the same place in the conversation (regenerated, edited, switched to) takes
      // that place; a new place goes at the end.
      const position = element.dataset.position;
      const other = position ? turns.querySelector(`.turn[data-position="${position}"]`) : null;
      if (other) other.replaceWith(element);
      else turns.appendChild(element);
      renderLive(element);
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
    for (const element of parseFragments(frame.html)) swapKeepingView(element);
    setStatus(frame.turn, frame.status);
    updateComposer();
  }

  function applyDelta(delta) {
    if (awaitingSnapshot.has(delta.turn)) return;
    const column = `turn-${delta.turn}-seat-${delta.seat}`;
    const id = delta.final
      ? `turn-${delta.turn}-final-text`
      : delta.reasoning
        ? `${column}-reasoning-text`
        : `${column}-text`;
    const target = document.getElementById(id);
    if (!target) {
      resync(delta.turn);
      return;
    }
    const have = parseInt(target.dataset.offset || "0", 10);
    if (delta.offset > have) {
      // A delta went missing: the server's snapshot puts us back on track.
      resync(delta.turn);
      return;
    }
    const chars = Array.from(delta.text);
    const fresh = chars.slice(have - delta.offset);
    if (fresh.length === 0) return;
    appendText(target, fresh.join(""));
    target.dataset.offset = String(have + fresh.length);
    if (delta.reasoning) target.closest("details").hidden = false;
  }

  function resync(turnId) {
    if (awaitingSnapshot.has(turnId)) return;
    awaitingSnapshot.add(turnId);
    send({ type: "resync", turn: turnId });
  }

  function send(frame) {
    if (!socket || socket.readyState !== WebSocket.OPEN) return false;
    const text = JSON.stringify(frame);
    const size = maxFrameBytes ? utf8Bytes(text) : 0;
    if (size > maxFrameBytes) {
      // Daphne would close the socket without a word; say why here and keep the socket.
      showError(
        `That message is too large to send (${formatCount(Math.ceil(size / 1024))} KiB); ` +
          `the limit is ${formatCount(Math.floor(maxFrameBytes / 1024))} KiB.`,
      );
      return false;
    }
    socket.send(text);
    return true;
  }

  function onMessage(event) {
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch (_) {
      return;
    }
    switch (frame.type) {
      case "deltas":
        for (const delta of frame.deltas) applyDelta(delta);
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
        restorePrompt();
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
      clearConnection();
    });
    socket.addEventListener("message", onMessage);
    socket.addEventListener("close", (event) => {
      room.dataset.socket = "closed";
      const wasSending = sending;
      sending = false;
      updateComposer();
      if (event.code === 4401 || event.code === 4404) {
        showError("This conversation is not available: log in again or pick another conversation.");
        return;
      }
      if (event.code === 1009) {
        showError(
          "That message was too large for the server, which closed the connection. " +
            "It was not sent: shorten it and send again.",
        );
      } else if (wasSending && pendingPrompt) {
        // Daphne drops a connection whose message is over its limit without a close frame (1006), so a
        // large prompt lost in flight is the likely reason even without 1009.
        const kib = Math.ceil(new TextEncoder().encode(pendingPrompt).length / 1024);
        showError(
          kib > LARGE_PROMPT_KIB
            ? `The connection was lost while your prompt (${formatCount(kib)} KiB) was being sent; it is ` +
                "back in the box. A message that large may be more than the server, or a proxy in front of " +
                "it, accepts: shorten it and send again."
            : "The connection was lost before the server confirmed your prompt; it is back in the box. " +
                "Once reconnected, send it again if it did not start.",
        );
      }
      // Nothing typed is lost: a prompt the server never took up goes back in the box.
      restorePrompt();
      showConnection("Connection lost, reconnecting…");
      // Back off, with jitter, up to 15 s between attempts.
      const delay = Math.min(15000, 500 * 2 ** retry) * (0.5 + Math.random() / 2);
      retry += 1;
      setTimeout(connect, delay);
    });
  }

  function onSubmit(event) {
    const prompt = promptBox.value;
    const refusal = promptRefusal(prompt);
    if (refusal) {
      // Refused before anything goes out, over the socket or as a form post.
      event.preventDefault();
      showError(refusal);
      promptBox.focus();
      return;
    }
    if (!room || !socket || socket.readyState !== WebSocket.OPEN) return; // plain form post instead
    event.preventDefault();
    if (sending || anyRunning()) return;
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
      promptBox.focus();
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
    composer.addEventListener("submit", (event) => {
      // A plain post: show it is going out and refuse a second click.
      if (event.defaultPrevented) return;
      if (!room || !socket || socket.readyState !== WebSocket.OPEN) {
        setTimeout(() => {
          sendButton.disabled = true;
          sendButton.textContent = "Sending…";
        }, 0);
      }
    });
  }

  if (stopButton) stopButton.addEventListener("click", stopRun);

  // The turn's own Cancel (at its foot) stays as a second way to stop that one turn.
  document.addEventListener("click", (event) => {
    const cancel = event.target.closest("[data-cancel-turn]");
    if (!cancel) return;
    const turnId = parseInt(cancel.dataset.cancelTurn, 10);
    cancel.disabled = true;
    cancel.textContent = "Cancelling…";
    if (!send({ type: "cancel", turn: turnId })) {
      cancel.disabled = false;
      cancel.textContent = "Cancel";
      showError("Not connected: try again in a moment.");
      return;
    }
    stopping.add(turnId);
    updateComposer();
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

  // Actions on a finished turn (static/js/turn_actions.js) go out on this socket: the event's detail holds
  // the frame, and says whether it was sent.
  document.addEventListener("room:send", (event) => {
    clearError();
    event.detail.sent = send(event.detail.frame);
  });

  if (room) connect();
  updateComposer();
})();
