// Blind comparison blocks in the chatroom. room.js swaps in turns rendered by the server's run recorder,
// where a finished turn's comparison is a slot that loads itself with htmx (hx-trigger="load"); htmx only
// acts on elements it has processed, so each such slot is handed to htmx as it appears.
(function () {
  "use strict";

  const turns = document.getElementById("turns");
  if (!turns || !window.htmx) return;

  function processSlots(node) {
    if (!(node instanceof Element)) return;
    const slots = node.matches("[data-comparison-slot]")
      ? [node]
      : node.querySelectorAll("[data-comparison-slot]");
    for (const slot of slots) window.htmx.process(slot);
  }

  new MutationObserver((records) => {
    for (const record of records) {
      for (const node of record.addedNodes) processSlots(node);
    }
  }).observe(turns, { childList: true, subtree: true });
})();
