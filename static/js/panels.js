// The composer's cost estimate (panels app). The estimate refreshes with htmx; this only keeps it from asking
// while the composer form is being posted as a page change: the page would abort the request, which htmx
// reports as an error, and the estimate is of no use by then. A send over the socket (the submit event's
// default prevented by room.js) leaves the estimate working.
(function () {
  "use strict";

  document.addEventListener("submit", (event) => {
    if (event.defaultPrevented || !(event.target instanceof HTMLFormElement)) return;
    for (const estimate of event.target.querySelectorAll("[data-cost-estimate]")) {
      estimate.dataset.posting = "true";
    }
  });

  document.addEventListener("htmx:confirm", (event) => {
    const elt = event.detail && event.detail.elt;
    if (elt instanceof HTMLElement && elt.dataset.posting === "true") event.preventDefault();
  });
})();
