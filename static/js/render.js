// Markdown rendered in the browser while it streams, with the server's guarantees (apps/core/markdown.py).
//
// Two layers, as on the server: markdown-it with raw HTML off writes the HTML (so "<script>" in a model's text
// stays text), then a DOMPurify instance of our own keeps only the tags, attributes, classes and URL schemes
// that markdown-it and our rules emit (nh3's allow-list there), so a renderer bug cannot let markup through.
// Images are never emitted: their alt text (or URL) stays as plain text, as on the server. Links keep http,
// https and mailto (and relative) targets and get the server's rel and target. Code blocks get the server's
// markup (bar, language, copy button); a fence whose language highlight.js knows is coloured as it streams
// (highlight.js's `hljs-*` classes, which static/css/code.css paints with the server's Pygments colours), a
// fence without one stays plain, as on the server. highlight.js's markup goes through the same sanitiser, which
// keeps only `hljs-*` classes on spans inside code. When the server's HTML arrives, Pygments' colours replace
// these with no change of size, so nothing moves.
//
// A live text (a `.stream` element with a data-offset: a column's answer or reasoning, the fused answer) keeps
// its Markdown source here; room.js appends each delta to the source (offsets are counted on the source, never
// on the DOM) and the element is rendered again from its whole source, at most every MIN_INTERVAL_MS (longer
// when rendering gets slow), in an animation frame. Only the top-level blocks that changed are replaced, so
// what is finished (a table, a code block being read or selected) stays as it is while the text grows.
//
// Everything here is static and inert under the CSP: no eval, no inline style, no handler attributes.
"use strict";

(function () {
  const markdownit = window.markdownit;
  const DOMPurify = window.DOMPurify;
  if (typeof markdownit !== "function" || typeof DOMPurify !== "function") return;
  // Optional: without it, code streams plain and is coloured once the server's HTML arrives.
  const hljs = window.hljs && typeof window.hljs.highlight === "function" ? window.hljs : null;

  // The server's limits and classes (apps/core/markdown.py: MAX_NESTING, _ALIGN_CLASSES, _TAGS, _CLEANER).
  const MAX_NESTING = 20;
  const LINK_REL = "noopener noreferrer nofollow";
  const ALIGN_CLASSES = {
    "text-align:left": "align-left",
    "text-align:center": "align-center",
    "text-align:right": "align-right",
  };
  const TAGS = [
    "a", "blockquote", "br", "button", "code", "del", "div", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
    "li", "ol", "p", "pre", "s", "span", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul",
  ];
  // Per tag, the attributes kept; a list pins the values an attribute may have (any other value drops it).
  const ATTRIBUTES = {
    a: { href: null, title: null, target: ["_blank"] },
    ol: { start: null },
    button: { type: ["button"], "data-copy": [""], "aria-label": ["Copy code"] },
  };
  const CLASSES = {
    div: ["codeblock", "codeblock-bar"],
    span: ["codeblock-lang", "md-image"],
    pre: ["highlight"],
    button: ["copy"],
    th: Object.values(ALIGN_CLASSES),
    td: Object.values(ALIGN_CLASSES),
  };
  // highlight.js's token classes; kept only on a span inside a code block (see the sanitiser's hook).
  const HLJS_CLASS = /^hljs-[a-z][a-z_-]*$/;
  const HLJS_SPAN = "pre.highlight > code span";
  // apps/core/markdown.py's HIGHLIGHT_MAX_CHARS: a longer block is shown plain there, so here too.
  const HIGHLIGHT_MAX_CHARS = 20000;
  // Highlighted blocks kept, so a render re-highlights only the block that grew (a finished one is reused).
  const HIGHLIGHT_CACHE_SIZE = 64;
  // http, https, mailto, or a relative URL (no scheme at all): what nh3's url_schemes lets through.
  const URL_ALLOWED = /^(?:(?:https?|mailto):|[^a-z]|[a-z+.-]+(?:[^a-z+.\-:]|$))/i;
  // Rendering every this often at most while text streams; slower when a render takes long (see flush).
  const MIN_INTERVAL_MS = 50;
  const COST_FACTOR = 4;

  // --- Markdown to HTML: markdown-it with the server's renderer rules -------------------------------------

  const md = markdownit("default", { html: false, linkify: false, maxNesting: MAX_NESTING }).enable([
    "table",
    "strikethrough",
  ]);
  const { escapeHtml, unescapeAll } = md.utils;

  const highlighted = new Map();

  // The code's HTML: highlight.js's when it knows the language (escaped text in its spans), else escaped text.
  // Untrusted either way: it goes through the sanitiser with everything else.
  function codeHtml(code, language) {
    if (!hljs || !language || code.length > HIGHLIGHT_MAX_CHARS || !hljs.getLanguage(language)) {
      return escapeHtml(code);
    }
    const key = language.toLowerCase() + "\n" + code;
    let html = highlighted.get(key);
    if (html === undefined) {
      try {
        html = hljs.highlight(code, { language: language, ignoreIllegals: true }).value;
      } catch (error) {
        html = escapeHtml(code);
      }
      if (highlighted.size >= HIGHLIGHT_CACHE_SIZE) highlighted.delete(highlighted.keys().next().value);
      highlighted.set(key, html);
    }
    return html;
  }

  // apps/core/templates/core/codeblock.html.
  function codeblock(code, language) {
    const label = Array.from(language).slice(0, 40).join("") || "text";
    return (
      '<div class="codeblock"><div class="codeblock-bar"><span class="codeblock-lang">' +
      escapeHtml(label) +
      '</span><button type="button" class="copy" data-copy aria-label="Copy code">Copy</button></div>' +
      '<pre class="highlight"><code>' +
      codeHtml(code, language) +
      "</code></pre></div>\n"
    );
  }

  const rules = md.renderer.rules;
  rules.fence = function (tokens, idx) {
    const token = tokens[idx];
    const info = token.info ? unescapeAll(token.info).trim() : "";
    return codeblock(token.content, info ? info.split(/\s+/)[0] : "");
  };
  rules.code_block = function (tokens, idx) {
    return codeblock(tokens[idx].content, "");
  };
  rules.image = function (tokens, idx, options, env, self) {
    const token = tokens[idx];
    const alt = self.renderInlineAsText(token.children || [], options, env);
    return '<span class="md-image">' + escapeHtml(alt || token.attrGet("src") || "") + "</span>";
  };
  rules.link_open = function (tokens, idx, options, env, self) {
    const href = tokens[idx].attrGet("href") || "";
    if (href.startsWith("http://") || href.startsWith("https://")) tokens[idx].attrSet("target", "_blank");
    return self.renderToken(tokens, idx, options);
  };
  // Tables align with inline styles, which the CSP and the sanitiser refuse; a class survives both.
  function alignedCell(tokens, idx, options, env, self) {
    const token = tokens[idx];
    const style = token.attrGet("style");
    if (style !== null) {
      token.attrs = token.attrs.filter((attr) => attr[0] !== "style");
      if (ALIGN_CLASSES[style]) token.attrSet("class", ALIGN_CLASSES[style]);
    }
    return self.renderToken(tokens, idx, options);
  }
  rules.th_open = alignedCell;
  rules.td_open = alignedCell;

  // --- HTML to safe DOM: DOMPurify with the server's allow-list --------------------------------------------

  // An instance of our own, so these hooks never touch anyone else's use of DOMPurify.
  const purify = DOMPurify(window);
  purify.addHook("uponSanitizeAttribute", function (node, data) {
    const tag = node.nodeName.toLowerCase();
    const name = data.attrName;
    if (name === "class") {
      const allowed = Object.hasOwn(CLASSES, tag) ? CLASSES[tag] : [];
      // Parents are sanitised before their children, so the enclosing pre and code are already ours.
      const inCode = tag === "span" && node.matches(HLJS_SPAN);
      const kept = data.attrValue
        .split(/\s+/)
        .filter((cls) => (inCode ? HLJS_CLASS.test(cls) : allowed.includes(cls)));
      data.attrValue = kept.join(" ");
      data.keepAttr = kept.length > 0;
      return;
    }
    const rule = Object.hasOwn(ATTRIBUTES, tag) ? ATTRIBUTES[tag] : null;
    if (!rule || !Object.hasOwn(rule, name)) {
      data.keepAttr = false;
      return;
    }
    if (rule[name] !== null && !rule[name].includes(data.attrValue)) data.keepAttr = false;
  });
  purify.addHook("afterSanitizeAttributes", function (node) {
    if (node.nodeName === "A") node.setAttribute("rel", LINK_REL);
  });
  const PURIFY_CONFIG = {
    ALLOWED_TAGS: TAGS,
    ALLOWED_ATTR: ["href", "title", "target", "start", "type", "class", "data-copy", "aria-label"],
    ALLOW_DATA_ATTR: false,
    ALLOW_ARIA_ATTR: false,
    ALLOWED_URI_REGEXP: URL_ALLOWED,
    RETURN_DOM_FRAGMENT: true,
  };

  // Untrusted Markdown as a fragment of safe nodes, ready to insert.
  function fragment(source) {
    return purify.sanitize(md.render(source), PURIFY_CONFIG);
  }

  // Replace what changed: blocks equal to the fresh render stay (with their selection and copy state).
  function renderInto(element, source) {
    const fresh = fragment(source);
    const have = element.childNodes;
    let same = 0;
    while (same < have.length && fresh.firstChild && have[same].isEqualNode(fresh.firstChild)) {
      fresh.firstChild.remove();
      same += 1;
    }
    while (element.childNodes.length > same) element.lastChild.remove();
    element.appendChild(fresh);
  }

  // --- Live texts ------------------------------------------------------------------------------------------

  const sources = new WeakMap();
  const dirty = new Set();
  let timer = 0;
  let lastFlush = 0;
  let interval = MIN_INTERVAL_MS;

  // A live text's first rendering: its source is the raw text the server put in the page (a running turn
  // after a reload, a snapshot); from then on the element shows Markdown and reads as the server's does.
  function adopt(element) {
    if (sources.has(element)) return true;
    if (!element.classList.contains("stream")) return false;
    const source = element.textContent || "";
    sources.set(element, source);
    element.classList.remove("stream");
    element.classList.add("markdown", "prose");
    renderInto(element, source);
    return true;
  }

  function flush() {
    timer = 0;
    const started = performance.now();
    for (const element of dirty) {
      if (!element.isConnected) continue;
      try {
        renderInto(element, sources.get(element));
      } catch (error) {
        // Never lose text to a renderer failure: show the source as plain text until the next render.
        element.textContent = sources.get(element);
        console.warn("Markdown rendering failed", error);
      }
    }
    dirty.clear();
    lastFlush = performance.now();
    // A long text costs more to render each time: wait in proportion, so streaming never hogs the page.
    interval = Math.max(MIN_INTERVAL_MS, COST_FACTOR * (lastFlush - started));
  }

  function schedule(element) {
    dirty.add(element);
    if (timer) return;
    const wait = Math.max(0, lastFlush + interval - performance.now());
    timer = window.setTimeout(() => window.requestAnimationFrame(flush), wait);
  }

  // Append streamed text to a live element's source; false if the element is not a live text.
  function append(element, text) {
    if (!adopt(element)) return false;
    sources.set(element, sources.get(element) + text);
    schedule(element);
    return true;
  }

  // Render every live text in root (root included) that is not yet rendered.
  function renderLive(root) {
    if (!root || !root.querySelectorAll) return;
    if (root.matches(".stream[data-offset]")) adopt(root);
    for (const element of root.querySelectorAll(".stream[data-offset]")) adopt(element);
  }

  window.FusionMarkdown = {
    fragment: fragment,
    append: append,
    renderLive: renderLive,
    source: (element) => sources.get(element),
  };

  renderLive(document.body);
})();
