// Copy buttons on rendered code blocks. One delegated listener covers blocks that arrive later
// (htmx swaps, streamed answers that are re-rendered when finished).
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

  function announce(message) {
    var region = document.getElementById("live-status");
    if (region) { region.textContent = message; }
  }

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
