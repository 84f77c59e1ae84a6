// The page's shell around the chat: the colour theme, the history drawer on a phone, the composer's
// details, how turns fold (the fused answer is the turn's answer), the seat tabs of a phone's carousel, and
// the keyboard shortcuts with their help sheet. room.js owns the socket and what it renders; this file only
// watches the turns it renders (a MutationObserver), so the two never call each other.
"use strict";

(function () {
  const root = document.documentElement;
  const phone = window.matchMedia("(max-width: 760px)");
  const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)");

  function scrollBehavior() {
    return reducedMotion.matches ? "auto" : "smooth";
  }

  function announce(message) {
    const status = document.getElementById("live-status");
    if (status) status.textContent = message;
  }

  // --- Theme ------------------------------------------------------------------------------------------------
  // The server renders data-theme from the stored choice (no flash); a click repaints at once and tells the
  // server, which keeps it on the signed-in person's preference and in a cookie.

  const THEMES = ["system", "light", "dark"];
  const THEME_NAMES = { system: "System", light: "Light", dark: "Dark" };

  function themeApply(theme) {
    root.dataset.theme = theme;
    const meta = document.querySelector('meta[name="color-scheme"]');
    if (meta) meta.content = theme === "system" ? "light dark" : theme;
    for (const button of document.querySelectorAll("[data-theme-toggle]")) {
      const next = THEMES[(THEMES.indexOf(theme) + 1) % THEMES.length];
      button.value = next;
      button.dataset.themeCurrent = theme;
      button.title = `Colour theme: ${theme} (click to change)`;
      const name = button.querySelector("[data-theme-name]");
      if (name) name.textContent = THEME_NAMES[theme];
    }
  }

  function themeCycle(button) {
    const form = button.form;
    const next = button.value;
    if (!THEMES.includes(next)) return;
    themeApply(next);
    announce(`Theme: ${THEME_NAMES[next]}`);
    const body = new FormData(form);
    body.set("theme", next);
    fetch(form.action, {
      method: "POST",
      body: body,
      headers: { "X-Requested-With": "fetch" },
      credentials: "same-origin",
    }).catch(() => announce("The theme could not be saved: it applies to this page only."));
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-theme-toggle]");
    if (!button) return;
    event.preventDefault();
    themeCycle(button);
  });

  // --- History drawer (phones) ------------------------------------------------------------------------------

  const sidebar = document.getElementById("sidebar");
  const overlay = document.querySelector(".drawer-overlay");
  let drawerOpener = null;

  function drawerIsOpen() {
    return sidebar !== null && sidebar.classList.contains("is-open");
  }

  // While the drawer is open the rest of the page is inert: focus and clicks stay in the drawer.
  function drawerInert(on) {
    for (const element of document.querySelectorAll(".conversation, .topbar")) element.inert = on;
  }

  function drawerOpen(opener) {
    if (!sidebar || !phone.matches) return;
    drawerOpener = opener || null;
    sidebar.classList.add("is-open");
    if (overlay) overlay.hidden = false;
    drawerInert(true);
    for (const button of document.querySelectorAll("[data-drawer-open]")) button.setAttribute("aria-expanded", "true");
    const first = sidebar.querySelector(".conversation-item.current a") || sidebar.querySelector("a, button");
    if (first) first.focus();
  }

  function drawerClose() {
    if (!drawerIsOpen()) return;
    sidebar.classList.remove("is-open");
    if (overlay) overlay.hidden = true;
    drawerInert(false);
    for (const button of document.querySelectorAll("[data-drawer-open]")) button.setAttribute("aria-expanded", "false");
    if (drawerOpener && document.contains(drawerOpener)) drawerOpener.focus();
    drawerOpener = null;
  }

  document.addEventListener("click", (event) => {
    const opener = event.target.closest("[data-drawer-open]");
    if (opener) {
      drawerOpen(opener);
      return;
    }
    if (event.target.closest("[data-drawer-close]")) drawerClose();
  });
  // A phone turned sideways (or a window widened) shows the sidebar in place: no drawer left open.
  phone.addEventListener("change", () => {
    if (!phone.matches) drawerClose();
  });

  // --- The composer's details ------------------------------------------------------------------------------

  document.addEventListener("click", (event) => {
    const toggle = event.target.closest("[data-composer-details]");
    if (!toggle) return;
    const composer = toggle.closest(".composer");
    const open = !composer.classList.contains("details-open");
    composer.classList.toggle("details-open", open);
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
    toggle.textContent = open ? "Less" : "Details";
  });

  // --- Turns: the fused answer is the turn's answer ---------------------------------------------------------

  const turns = document.getElementById("turns");
  // The fused answer's live text, present from the writer's start until the answer is done (by id: its
  // classes change as it is rendered).
  const FINAL_TEXT = '.final [id$="-final-text"]';
  const seenTurns = new Set();
  const writing = new Set();

  function fold(turn) {
    for (const details of turn.querySelectorAll(":scope > details.panel-answers, :scope > details.analysis-fold")) {
      details.open = false;
    }
  }

  // Whether the person is following the live turn: some of it is on screen. Someone who scrolled back to
  // read an older turn is left where they are.
  function following(turn) {
    const rect = turn.getBoundingClientRect();
    return rect.bottom > 0 && rect.top < window.innerHeight;
  }

  function writerStarted(turn) {
    const id = turn.dataset.turn;
    if (writing.has(id)) return;
    writing.add(id);
    const follow = following(turn);
    const panel = turn.querySelector(":scope > details.panel-answers");
    if (panel) panel.open = false;
    if (follow) turn.scrollIntoView({ block: "start", behavior: scrollBehavior() });
    announce("The panel has answered: the fused answer is being written.");
  }

  // The strip of a folded panel repeats each column's name, state, time and cost, kept current here as the
  // columns are swapped in.
  function stripUpdate(column) {
    const turn = column.closest(".turn");
    const seat = column.dataset.seat;
    if (!turn || !seat) return;
    const chip = turn.querySelector(`.strip-seat[data-strip-seat="${seat}"]`);
    if (!chip) return;
    const name = column.querySelector(".model-name");
    const state = column.querySelector(".seat-state");
    const time = column.querySelector('[data-stat="duration"]');
    const cost = column.querySelector('[data-stat="cost"]');
    chip.className = `strip-seat state-${column.dataset.status || ""}`;
    chip.replaceChildren();
    const part = (cls, text) => {
      if (!text) return;
      if (chip.childNodes.length) chip.append(" ");
      const span = document.createElement("span");
      span.className = cls;
      span.textContent = text;
      chip.append(span);
    };
    part("strip-name", name ? name.textContent.trim() : "");
    part("strip-state", state ? state.textContent.trim() : "");
    part("strip-time", time ? time.textContent.trim() : "");
    part("strip-cost", cost ? cost.textContent.trim() : "");
  }

  function turnAdded(turn) {
    const id = turn.dataset.turn;
    if (!seenTurns.has(id)) {
      seenTurns.add(id);
      // A new turn: the ones before it fold to prompt and fused answer.
      let before = turn.previousElementSibling;
      while (before) {
        if (before.classList.contains("turn")) fold(before);
        before = before.previousElementSibling;
      }
    }
    if (turn.dataset.turnStatus === "running" && turn.querySelector(FINAL_TEXT)) {
      // A snapshot taken while the writer writes already shows the panel folded.
      writing.add(id);
    }
  }

  function onTurnsChanged(records) {
    for (const record of records) {
      const target = record.target;
      if (target instanceof Element) {
        // The fused answer's first text (a delta into its stream) also says the writer started.
        const final = target.closest(".final");
        const turn = final && final.querySelector('[id$="-final-text"]') && final.closest('.turn[data-turn-status="running"]');
        if (turn) writerStarted(turn);
        // A column's head or stats changed in place.
        const column = target.closest(".column-head, .column-stats") && target.closest(".column");
        if (column) stripUpdate(column);
      }
      for (const node of record.addedNodes) {
        if (node.nodeType !== Node.ELEMENT_NODE) continue;
        if (node.classList.contains("turn")) {
          turnAdded(node);
        } else if (node.classList.contains("column")) {
          stripUpdate(node);
        } else if (node.classList.contains("final") && node.querySelector('[id$="-final-text"]')) {
          const turn = node.closest('.turn[data-turn-status="running"]');
          if (turn) writerStarted(turn);
        }
      }
    }
  }

  if (turns) {
    for (const turn of turns.querySelectorAll(".turn")) {
      seenTurns.add(turn.dataset.turn);
      if (turn.querySelector(FINAL_TEXT)) writing.add(turn.dataset.turn);
    }
    new MutationObserver(onTurnsChanged).observe(turns, { childList: true, subtree: true });
  }

  // --- Seat tabs (a phone's carousel of columns) ------------------------------------------------------------

  function tabSelect(tab, { scroll = true, focus = false } = {}) {
    const list = tab.closest(".seat-tabs");
    for (const other of list.querySelectorAll('[role="tab"]')) {
      const selected = other === tab;
      other.setAttribute("aria-selected", selected ? "true" : "false");
      other.tabIndex = selected ? 0 : -1;
    }
    if (focus) tab.focus();
    tab.scrollIntoView({ block: "nearest", inline: "nearest" });
    const column = document.getElementById(tab.getAttribute("aria-controls"));
    const columns = column && column.closest(".columns");
    if (scroll && columns) {
      columns.scrollTo({ left: column.offsetLeft - columns.offsetLeft, behavior: scrollBehavior() });
    }
  }

  document.addEventListener("click", (event) => {
    const tab = event.target.closest(".seat-tabs [role=tab]");
    if (tab) tabSelect(tab);
  });

  document.addEventListener("keydown", (event) => {
    const tab = event.target instanceof Element && event.target.closest(".seat-tabs [role=tab]");
    if (!tab) return;
    const tabs = Array.from(tab.closest(".seat-tabs").querySelectorAll("[role=tab]"));
    const index = tabs.indexOf(tab);
    const moves = { ArrowRight: index + 1, ArrowLeft: index - 1, Home: 0, End: tabs.length - 1 };
    if (!(event.key in moves)) return;
    event.preventDefault();
    const next = tabs[(moves[event.key] + tabs.length) % tabs.length];
    tabSelect(next, { focus: true });
  });

  // A swipe moves the carousel: the tab of the column now in front follows.
  let scrollTimer = 0;
  document.addEventListener(
    "scroll",
    (event) => {
      const columns = event.target instanceof Element && event.target.classList.contains("columns") ? event.target : null;
      if (!columns) return;
      clearTimeout(scrollTimer);
      scrollTimer = setTimeout(() => {
        const list = columns.parentElement.querySelector(".seat-tabs");
        if (!list) return;
        let nearest = null;
        let best = Infinity;
        for (const column of columns.querySelectorAll(":scope > .column")) {
          const distance = Math.abs(column.offsetLeft - columns.offsetLeft - columns.scrollLeft);
          if (distance < best) {
            best = distance;
            nearest = column;
          }
        }
        const tab = nearest && list.querySelector(`[aria-controls="${nearest.id}"]`);
        if (tab && tab.getAttribute("aria-selected") !== "true") tabSelect(tab, { scroll: false });
      }, 80);
    },
    true,
  );

  // --- Keyboard shortcuts and their help sheet --------------------------------------------------------------

  const help = document.getElementById("help-sheet");
  let helpOpener = null;

  function helpOpen() {
    if (!help || help.open) return;
    helpOpener = document.activeElement;
    for (const menu of document.querySelectorAll("details.usermenu[open]")) menu.open = false;
    help.showModal();
  }

  if (help) {
    help.addEventListener("close", () => {
      if (helpOpener && document.contains(helpOpener) && helpOpener !== document.body) helpOpener.focus();
      helpOpener = null;
    });
    // A click on the backdrop (outside the sheet's box) closes it.
    help.addEventListener("click", (event) => {
      if (event.target === help) help.close();
    });
  }

  document.addEventListener("click", (event) => {
    if (event.target.closest("[data-help-open]")) helpOpen();
  });

  function typing(target) {
    if (!(target instanceof Element)) return false;
    return target.closest("input, textarea, select, [contenteditable=''], [contenteditable='true']") !== null;
  }

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.isComposing || event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (event.key === "Escape") {
      if (help && help.open) return; // the dialog closes itself
      if (drawerIsOpen()) {
        event.preventDefault();
        drawerClose();
        return;
      }
      // Esc already means something in the rename field (give up the rename) and in other fields; in the
      // prompt box and anywhere else it stops the run.
      if (target instanceof Element && target.closest(".rename-form")) return;
      if (typing(target) && target.id !== "prompt") return;
      const stop = document.getElementById("stop-button");
      if (stop && !stop.hidden && !stop.disabled) {
        event.preventDefault();
        stop.click();
      }
      return;
    }
    if (typing(target)) return;
    if (event.key === "?") {
      event.preventDefault();
      helpOpen();
    } else if (event.key === "/") {
      const prompt = document.getElementById("prompt");
      if (prompt) {
        event.preventDefault();
        prompt.focus();
      }
    } else if (event.key === "n" || event.key === "N") {
      // The chatroom's own link, else the home link (which is the chatroom for a signed-in person).
      const link = document.querySelector("a.new-conversation") || document.querySelector("a.brand");
      if (link) {
        event.preventDefault();
        window.location.assign(link.href);
      }
    } else if (event.key === "t" || event.key === "T") {
      const toggle = document.querySelector("[data-theme-toggle]");
      if (toggle) {
        event.preventDefault();
        themeCycle(toggle);
      }
    }
  });
})();
