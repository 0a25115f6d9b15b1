/* A small, safe Markdown renderer for model output.
 *
 * Safety by construction: the output is built with createElement/textContent, never innerHTML, so raw HTML in
 * the text stays text. Images are never loaded (only their alt text is shown: a remote image URL is a classic
 * way to exfiltrate data). Links are live only when they point to this origin over http(s); anything else
 * (javascript:, data:, other hosts) is shown as inert text. Supported: headings, paragraphs, line breaks,
 * fenced and inline code, bold, italics, strikethrough, ordered and unordered lists, block quotes, rules,
 * pipe tables, and citation markers [n] when the caller supplies a handler for them.
 *
 * inhouse.renderMarkdown(text, {cite: (n) => Node | null}) → DocumentFragment
 */
(function () {
  "use strict";

  const FENCE = /^\s*(```|~~~)\s*([\w+-]*)\s*$/;
  const HEADING = /^(#{1,6})\s+(.*?)\s*#*\s*$/;
  const RULE = /^\s*([-*_])(\s*\1){2,}\s*$/;
  const LIST_ITEM = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
  const QUOTE = /^\s*>\s?(.*)$/;
  const TABLE_SEP = /^\s*\|?\s*:?-{1,}:?\s*(\|\s*:?-{1,}:?\s*)*\|?\s*$/;

  function el(tag, cls) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    return node;
  }

  // Only same-origin http(s) URLs become links.
  function safeHref(raw) {
    const url = (raw || "").trim();
    if (!url || /[\u0000-\u001f\u007f\\]/.test(url)) return null;
    let parsed;
    try { parsed = new URL(url, window.location.href); } catch (e) { return null; }
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") return null;
    if (parsed.origin !== window.location.origin) return null;
    return parsed.href;
  }

  function splitRow(line) {
    let s = line.trim();
    if (s.startsWith("|")) s = s.slice(1);
    if (s.endsWith("|") && !s.endsWith("\\|")) s = s.slice(0, -1);
    return s.split("|").map(function (c) { return c.trim(); });
  }

  function isBlockStart(line, next) {
    return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || LIST_ITEM.test(line) || QUOTE.test(line)
      || (line.includes("|") && next !== undefined && TABLE_SEP.test(next) && next.includes("-"));
  }

  /* -- inline --------------------------------------------------------------------------------------- */

  function findClose(text, marker, from) {
    let i = text.indexOf(marker, from);
    while (i !== -1 && text[i - 1] === "\\") i = text.indexOf(marker, i + 1);
    return i;
  }

  function inline(text, opts, parent) {
    let buf = "";
    const flush = function () { if (buf) { parent.append(document.createTextNode(buf)); buf = ""; } };
    let i = 0;
    while (i < text.length) {
      const ch = text[i];
      const rest = text.slice(i);
      let m;
      if (ch === "\\" && i + 1 < text.length && /[\\`*_{}\[\]()#+\-.!|~<>]/.test(text[i + 1])) {
        buf += text[i + 1]; i += 2; continue;
      }
      if (ch === "`") {
        const run = /^`+/.exec(rest)[0];
        const end = text.indexOf(run, i + run.length);
        if (end !== -1) {
          flush();
          const code = el("code");
          code.textContent = text.slice(i + run.length, end).trim();
          parent.append(code);
          i = end + run.length; continue;
        }
      }
      if (ch === "!" && (m = /^!\[([^\]]*)\]\(([^)]*)\)/.exec(rest))) {
        // Never load the image: show what it is, by its alt text.
        flush();
        const alt = el("span", "md-image-alt");
        const t = window.inhouse && window.inhouse.t ? window.inhouse.t : function (k) { return k; };
        alt.textContent = "[" + t("md.image") + (m[1].trim() ? ": " + m[1].trim() : "") + "]";
        alt.setAttribute("title", t("md.image_blocked"));
        parent.append(alt);
        i += m[0].length; continue;
      }
      if (ch === "[" && (m = /^\[(\d{1,2})\]/.exec(rest)) && opts.cite) {
        const node = opts.cite(parseInt(m[1], 10));
        if (node) { flush(); parent.append(node); i += m[0].length; continue; }
      }
      if (ch === "[" && (m = /^\[((?:[^\[\]]|\[[^\]]*\])+)\]\(\s*<?([^)\s>]*)>?(?:\s+"[^"]*")?\s*\)/.exec(rest))) {
        flush();
        const href = safeHref(m[2]);
        let link;
        if (href) {
          link = el("a");
          link.setAttribute("href", href);
          link.setAttribute("rel", "noopener noreferrer");
        } else {
          link = el("span", "md-link-inert");
          link.setAttribute("title", m[2]);
        }
        inline(m[1], opts, link);
        parent.append(link);
        i += m[0].length; continue;
      }
      if ((ch === "*" || ch === "_") && text[i + 1] === ch) {
        const end = findClose(text, ch + ch, i + 2);
        if (end > i + 2) {
          flush();
          const strong = el("strong");
          inline(text.slice(i + 2, end), opts, strong);
          parent.append(strong);
          i = end + 2; continue;
        }
      }
      if (ch === "~" && text[i + 1] === "~") {
        const end = findClose(text, "~~", i + 2);
        if (end > i + 2) {
          flush();
          const del = el("del");
          inline(text.slice(i + 2, end), opts, del);
          parent.append(del);
          i = end + 2; continue;
        }
      }
      if ((ch === "*" || ch === "_") && text[i + 1] && !/\s/.test(text[i + 1])
          && !(ch === "_" && i > 0 && /\w/.test(text[i - 1]))) {
        const end = findClose(text, ch, i + 1);
        if (end > i + 1 && !/\s/.test(text[end - 1]) && !(ch === "_" && /\w/.test(text[end + 1] || ""))) {
          flush();
          const em = el("em");
          inline(text.slice(i + 1, end), opts, em);
          parent.append(em);
          i = end + 1; continue;
        }
      }
      buf += ch;
      i += 1;
    }
    flush();
    return parent;
  }

  function inlineLines(lines, opts, parent) {
    lines.forEach(function (line, n) {
      if (n > 0) parent.append(el("br"));
      inline(line, opts, parent);
    });
    return parent;
  }

  /* -- blocks --------------------------------------------------------------------------------------- */

  function blocks(lines, opts, parent) {
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      let m;
      if (!line.trim()) { i++; continue; }
      if ((m = FENCE.exec(line))) {
        const fence = m[1];
        const body = [];
        i++;
        while (i < lines.length && !(lines[i].trim().startsWith(fence))) body.push(lines[i++]);
        i++; // the closing fence (or the end of a still-streaming answer)
        const pre = el("pre", "md-code");
        const code = el("code");
        if (m[2]) code.setAttribute("data-lang", m[2]);
        code.textContent = body.join("\n");
        pre.append(code);
        parent.append(pre);
        continue;
      }
      if ((m = HEADING.exec(line))) {
        // Inside a chat bubble: # is a section heading of the answer, not of the page.
        const h = el("h" + Math.min(6, m[1].length + 2), "md-h");
        inline(m[2], opts, h);
        parent.append(h);
        i++; continue;
      }
      if (RULE.test(line)) { parent.append(el("hr")); i++; continue; }
      if (QUOTE.test(line)) {
        const inner = [];
        while (i < lines.length && (m = QUOTE.exec(lines[i]))) { inner.push(m[1]); i++; }
        parent.append(blocks(inner, opts, el("blockquote")));
        continue;
      }
      if ((m = LIST_ITEM.exec(line))) {
        const ordered = /\d/.test(m[2]);
        const list = el(ordered ? "ol" : "ul");
        if (ordered && parseInt(m[2], 10) !== 1) list.setAttribute("start", String(parseInt(m[2], 10)));
        let item = null;
        let itemLines = [];
        const close = function () { if (item) { inlineLines(itemLines, opts, item); list.append(item); } };
        while (i < lines.length) {
          const lm = LIST_ITEM.exec(lines[i]);
          if (lm && /\d/.test(lm[2]) === ordered) {
            close();
            item = el("li");
            itemLines = [lm[3]];
          } else if (lines[i].trim() && /^\s+/.test(lines[i]) && item) {
            itemLines.push(lines[i].trim()); // continuation of the item (nested lists are flattened)
          } else {
            break;
          }
          i++;
        }
        close();
        parent.append(list);
        continue;
      }
      if (line.includes("|") && i + 1 < lines.length && TABLE_SEP.test(lines[i + 1]) && lines[i + 1].includes("-")) {
        const wrap = el("div", "md-table");
        const table = el("table");
        const head = el("thead");
        const hr = el("tr");
        for (const cell of splitRow(line)) hr.append(inline(cell, opts, el("th")));
        head.append(hr);
        table.append(head);
        const body = el("tbody");
        i += 2;
        while (i < lines.length && lines[i].includes("|") && lines[i].trim()) {
          const tr = el("tr");
          for (const cell of splitRow(lines[i])) tr.append(inline(cell, opts, el("td")));
          body.append(tr);
          i++;
        }
        table.append(body);
        wrap.append(table);
        parent.append(wrap);
        continue;
      }
      const para = [];
      while (i < lines.length && lines[i].trim() && !(para.length && isBlockStart(lines[i], lines[i + 1]))) {
        para.push(lines[i]);
        i++;
      }
      parent.append(inlineLines(para, opts, el("p")));
    }
    return parent;
  }

  function renderMarkdown(text, options) {
    const frag = document.createDocumentFragment();
    blocks(String(text || "").replace(/\r\n?/g, "\n").split("\n"), options || {}, frag);
    return frag;
  }

  window.inhouse = window.inhouse || {};
  window.inhouse.renderMarkdown = renderMarkdown;
  window.inhouse.safeHref = safeHref;
})();
