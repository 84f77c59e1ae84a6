// Copy buttons on rendered code blocks and on read-only fields (share links, API keys). Delegated listeners
// cover what arrives later (htmx swaps, streamed answers that are re-rendered when finished).
(function () {
  "use strict";

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    // Plain-http deployments have no async clipboard: fall back to a hidden selection.
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "visually-hidden";
      document.body.appendChild(area);
      area.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      area.remove();
      if (ok) { resolve(); } else { reject(new Error("copy refused")); }
    });
  }

  // The chatroom's copy buttons (static/js/turn_actions.js) copy through the same path.
  window.FusionRoom = window.FusionRoom || {};
  window.FusionRoom.copyText = copyText;

  function announce(message) {
    var region = document.getElementById("live-status");
    if (region) { region.textContent = message; }
  }

  // A button with data-copy-target="<input id>" copies that field (a share link, a new API key); its
  // data-copy-status names the element that says whether it worked.
  document.addEventListener("click", function (event) {
    var button = event.target instanceof Element ? event.target.closest("button[data-copy-target]") : null;
    if (!button) { return; }
    var input = document.getElementById(button.getAttribute("data-copy-target"));
    if (!input) { return; }
    var status = document.getElementById(button.getAttribute("data-copy-status") || "");
    function say(message) {
      if (status) { status.textContent = message; } else { announce(message); }
    }
    input.select();
    copyText(input.value).then(function () {
      say("Copied");
    }, function () {
      say("Copy refused by the browser: the text is selected, press Ctrl+C (⌘C on a Mac).");
    });
  });

  document.addEventListener("click", function (event) {
    var button = event.target instanceof Element ? event.target.closest("button[data-copy]") : null;
    if (!button) { return; }
    var block = button.closest(".codeblock");
    var code = block ? block.querySelector("pre code") : null;
    if (!code) { return; }
    copyText(code.textContent || "").then(function () {
      button.textContent = "Copied";
      button.setAttribute("data-copied", "");
      announce("Code copied to the clipboard");
    }, function () {
      button.textContent = "Copy failed";
      announce("Could not copy the code");
    });
    window.setTimeout(function () {
      button.textContent = "Copy";
      button.removeAttribute("data-copied");
    }, 1800);
  });
})();
