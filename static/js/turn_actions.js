// Acting on a finished turn: copy (a column, the fused answer, the whole turn as Markdown), regenerate,
// edit the prompt and resend, retry the failed seats, and switch between a turn's versions ("‹ 1/2 ›").
//
// Copy works on any page that shows turns (the shared page too): each button names a <template> holding
// the Markdown source as inert text, rendered by the server. The other actions change the conversation, so
// they exist on the owner's page only; they go out on the chatroom's socket as frames ({type: "regenerate" |
// "retry", turn}, {type: "edit", turn, prompt}, {type: "version", turn, version}) through room.js's
// "room:send" event. A run they start shows itself: its snapshot replaces the turn (room.js).
"use strict";

(function () {
  function announce(message) {
    const region = document.getElementById("live-status");
    if (region) region.textContent = message;
  }

  function sourceText(id) {
    const template = document.getElementById(id);
    return template && template.content ? template.content.textContent || "" : null;
  }

  function copySource(button) {
    const text = sourceText(button.dataset.copySource);
    const copyText = window.FusionRoom && window.FusionRoom.copyText;
    if (text === null || !copyText) return;
    const label = button.dataset.label || button.textContent;
    button.dataset.label = label;
    copyText(text).then(
      () => {
        button.textContent = "Copied";
        button.setAttribute("data-copied", "");
        announce("Copied to the clipboard");
      },
      () => {
        button.textContent = "Copy failed";
        announce("The browser refused to copy");
      },
    );
    window.setTimeout(() => {
      button.textContent = label;
      button.removeAttribute("data-copied");
    }, 1800);
  }

  // Sends a frame on the room's socket; false when it could not go (not connected).
  function sendFrame(frame) {
    const detail = { frame: frame, sent: false };
    document.dispatchEvent(new CustomEvent("room:send", { detail: detail }));
    if (!detail.sent) {
      const box = document.getElementById("room-error");
      if (box) {
        box.textContent = "Not connected: try again in a moment.";
        box.hidden = false;
      }
    }
    return detail.sent;
  }

  // A button that started something stays disabled until the turn is replaced by the run it started; if
  // the server refused (its reason shows by the composer), it comes back.
  function busy(button, text) {
    const label = button.textContent;
    button.disabled = true;
    button.textContent = text;
    window.setTimeout(() => {
      if (button.isConnected) {
        button.disabled = false;
        button.textContent = label;
      }
    }, 4000);
  }

  function editorClose(turn) {
    const editor = turn.querySelector(".prompt-editor");
    if (editor) editor.remove();
    const prompt = turn.querySelector(".turn-prompt");
    if (prompt) prompt.hidden = false;
  }

  function editorOpen(turnId) {
    const turn = document.getElementById("turn-" + turnId);
    const prompt = document.getElementById(`turn-${turnId}-prompt`);
    const source = sourceText(`turn-${turnId}-prompt-source`);
    if (!turn || !prompt || source === null) return;
    if (turn.querySelector(".prompt-editor")) {
      turn.querySelector(".prompt-editor textarea").focus();
      return;
    }
    const form = document.createElement("form");
    form.className = "prompt-editor";
    const label = document.createElement("label");
    label.className = "visually-hidden";
    label.htmlFor = `turn-${turnId}-prompt-edit`;
    label.textContent = "Edit the prompt";
    const box = document.createElement("textarea");
    box.id = `turn-${turnId}-prompt-edit`;
    box.rows = Math.min(12, Math.max(3, source.split("\n").length + 1));
    box.value = source;
    const row = document.createElement("div");
    row.className = "prompt-editor-actions";
    const resend = document.createElement("button");
    resend.type = "submit";
    resend.className = "button button-small primary";
    resend.textContent = "Resend";
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "button button-small button-secondary";
    cancel.textContent = "Cancel";
    cancel.addEventListener("click", () => editorClose(turn));
    row.append(resend, cancel);
    form.append(label, box, row);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!box.value.trim()) {
        box.focus();
        return;
      }
      if (sendFrame({ type: "edit", turn: parseInt(turnId, 10), prompt: box.value })) {
        busy(resend, "Sending…");
      }
    });
    box.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        editorClose(turn);
      } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    prompt.hidden = true;
    prompt.after(form);
    box.focus();
  }

  document.addEventListener("click", (event) => {
    const target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    const copy = target.closest("button[data-copy-source]");
    if (copy) {
      copySource(copy);
      return;
    }
    const action = target.closest("button[data-turn-action]");
    if (action) {
      const frame = { type: action.dataset.turnAction, turn: parseInt(action.dataset.turn, 10) };
      if (sendFrame(frame)) busy(action, action.dataset.turnAction === "retry" ? "Retrying…" : "Starting…");
      return;
    }
    const edit = target.closest("button[data-turn-edit]");
    if (edit) {
      editorOpen(edit.dataset.turn);
      return;
    }
    const step = target.closest("button[data-turn-version]");
    if (step && !step.disabled) {
      const frame = {
        type: "version",
        turn: parseInt(step.dataset.turn, 10),
        version: parseInt(step.dataset.turnVersion, 10),
      };
      if (sendFrame(frame)) step.disabled = true;
    }
  });
})();
