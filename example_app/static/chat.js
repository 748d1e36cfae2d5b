// The chat page's behaviour. The sidebar, its search, the conversation and the
// votes come from the extension's JSON API (data-api, "/v1"); sending a message,
// regenerating or stopping a reply, reading the page's votes and deleting a
// chat go to the app's own /chat routes. Replies stream in as server-sent
// events over a fetch. Stored strings reach the page through textContent, and
// an assistant's Markdown through markdown-it (raw HTML off) and an allow-list
// of elements and attributes: nothing a message says can run as script.
"use strict";

(() => {
  const root = document.getElementById("app");
  const API = root.dataset.api;
  const MAX_CHARS = Number(root.dataset.maxChars);
  const PAGE = 20;
  const SIDEBAR_PAGE = 50;
  const TITLE_SUFFIX = " · flask-smg-history example";
  const $ = (id) => document.getElementById(id);
  const log = $("log");
  const logStart = $("log-start");
  const notice = $("notice");
  const box = $("message");
  const sendButton = $("send");
  const sidebar = $("sidebar");
  const backdrop = $("backdrop");
  const menuButton = $("menu");
  const narrow = window.matchMedia("(max-width: 767.98px), (max-height: 480px)"); // as style.css
  const coarsePointer = window.matchMedia("(pointer: coarse)");

  let conversationId = root.dataset.conversation || null;
  let cursor = null; // the oldest item shown: the next page starts after it
  let hasMore = Boolean(conversationId);
  let loading = false;
  let active = null; // the reply streaming now: {abort, streamId, stopping}
  let sidebarCursor = null;
  let sidebarRun = 0; // answers of older listings are dropped

  // -- helpers ---------------------------------------------------------------
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  const SVG = "http://www.w3.org/2000/svg";
  const ICONS = {
    copy: [["rect", { x: 9, y: 9, width: 11, height: 11, rx: 2 }], ["path", { d: "M5 15V5a2 2 0 0 1 2-2h10" }]],
    check: [["path", { d: "M5 12.5l4.5 4.5L19 7" }]],
    regenerate: [["path", { d: "M20 12a8 8 0 1 1-2.3-5.7L20 8.5" }], ["path", { d: "M20 3.5v5h-5" }]],
    rename: [["path", { d: "M4 20h4L19 9l-4-4L4 16z" }], ["path", { d: "M13.5 6.5l4 4" }]],
    delete: [["path", { d: "M4 7h16M9 7V4.5h6V7M6.5 7l1 13h9l1-13" }]],
  };

  function icon(name) {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    for (const [tag, attrs] of ICONS[name]) {
      const shape = document.createElementNS(SVG, tag);
      for (const [key, value] of Object.entries(attrs)) shape.setAttribute(key, String(value));
      svg.append(shape);
    }
    return svg;
  }

  function setTitle(title) {
    const shown = title || "New chat";
    document.title = shown + TITLE_SUFFIX;
    $("chat-title").textContent = shown;
  }

  // -- errors, in words a person can act on ------------------------------------
  class RequestError extends Error {
    constructor(status, message, data) {
      super(message);
      this.status = status;
      this.data = data || {};
    }
  }

  // Words (and, for a sign-out, a link) for an error; `what` says what failed.
  function describe(err, what) {
    const status = err && err.status;
    if (status === 401) {
      return ["You were signed out, perhaps in another tab. ", el("a", { href: "/signin", text: "Sign in again" }), " to go on."];
    }
    if (status === 503) return [`${what}: the chat history is unavailable right now; try again in a moment.`];
    if (status === 0) return [`${what}: the server cannot be reached. Check your connection, or that the app is running.`];
    if (status >= 500) return [`${what}: something went wrong on the server (HTTP ${status}); try again.`];
    if (status === 404 && !err.friendly) return [`${what}: it no longer exists; it was deleted, perhaps in another tab. Reload the page.`];
    return [`${what}: ${err.message.charAt(0).toLowerCase()}${err.message.slice(1)}`];
  }

  function showNotice(...parts) {
    notice.replaceChildren(...parts.filter((part) => part !== "" && part !== undefined));
    notice.hidden = notice.childNodes.length === 0;
  }

  function showError(err, what) {
    showNotice(...describe(err, what));
  }

  // The app's own /chat routes word their errors for people; /v1's are for programs.
  const friendlyRoute = (url) => url.startsWith("/chat/");

  async function call(method, url, body) {
    const options = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, options);
    } catch (err) {
      throw new RequestError(0, "the server cannot be reached");
    }
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const message = (data.error && data.error.message) || `the request failed (HTTP ${response.status})`;
      const error = new RequestError(response.status, message, data);
      error.friendly = friendlyRoute(url);
      throw error;
    }
    return data;
  }

  const conversationUrl = (id) => `${API}/conversations/${encodeURIComponent(id)}`;
  const chatUrl = (id, rest = "") => `/chat/${encodeURIComponent(id)}${rest}`;

  // -- Markdown ------------------------------------------------------------------
  // markdown-it escapes raw HTML (html: false) and refuses javascript:, vbscript:,
  // file: and data: links. The rendered markup is then parsed in an inert
  // <template> and kept only if every element and attribute is on this list.
  const md = window.markdownit({ html: false, linkify: true, typographer: false });
  const ALLOWED = {
    A: ["href", "title"], P: [], BR: [], HR: [], EM: [], STRONG: [], S: [], CODE: ["class"], PRE: [],
    BLOCKQUOTE: [], UL: [], OL: ["start"], LI: [], H1: [], H2: [], H3: [], H4: [], H5: [], H6: [],
    TABLE: [], THEAD: [], TBODY: [], TR: [], TH: ["style"], TD: ["style"],
  };
  const SAFE_HREF = /^(https?:|mailto:|#|\/(?!\/))/i;

  function sanitize(parent) {
    for (const node of [...parent.childNodes]) {
      if (node.nodeType === Node.TEXT_NODE) continue;
      if (node.nodeType !== Node.ELEMENT_NODE) {
        node.remove();
        continue;
      }
      if (node.tagName === "IMG") {
        // No remote images: an image becomes a link to it.
        const src = node.getAttribute("src") || "";
        const alt = node.getAttribute("alt") || "image";
        node.replaceWith(SAFE_HREF.test(src) ? el("a", { href: src, text: `🖼 ${alt}` }) : document.createTextNode(alt));
        continue;
      }
      const allowed = ALLOWED[node.tagName];
      if (!allowed) {
        node.replaceWith(document.createTextNode(node.textContent));
        continue;
      }
      for (const attr of [...node.attributes]) {
        if (!allowed.includes(attr.name)) node.removeAttribute(attr.name);
      }
      if (node.tagName === "A") {
        const href = node.getAttribute("href") || "";
        if (!SAFE_HREF.test(href)) node.removeAttribute("href");
        else if (!href.startsWith("#")) {
          node.setAttribute("target", "_blank");
          node.setAttribute("rel", "noopener noreferrer nofollow");
        }
      }
      if (node.tagName === "CODE" && !/^language-[\w+#.-]{1,40}$/.test(node.getAttribute("class") || "")) {
        node.removeAttribute("class");
      }
      if (node.hasAttribute("style")) {
        // Table alignment comes as a style attribute; the page's CSP allows no inline style.
        const align = /text-align:\s*(left|center|right)/.exec(node.getAttribute("style"));
        node.removeAttribute("style");
        if (align) node.className = `align-${align[1]}`;
      }
      sanitize(node);
    }
  }

  function enhance(container) {
    for (const table of container.querySelectorAll("table")) {
      const wrap = el("div", { class: "table-wrap" });
      table.replaceWith(wrap);
      wrap.append(table);
    }
    for (const pre of container.querySelectorAll("pre")) {
      const code = pre.querySelector("code");
      const language = code && /^language-(.+)$/.exec(code.className);
      const copy = el("button", { type: "button", class: "copy-code", "aria-label": "Copy code" }, icon("copy"), el("span", { text: "Copy" }));
      copy.addEventListener("click", () => copyWithFeedback(copy, pre.textContent, "Copy"));
      const block = el("div", { class: "code-block" }, el("div", { class: "code-head" }, el("span", { text: language ? language[1] : "code" }), copy));
      pre.replaceWith(block);
      block.append(pre);
      // A wide block scrolls sideways: keyboard users reach it to scroll it.
      pre.tabIndex = 0;
    }
  }

  function renderMarkdown(target, source) {
    const template = document.createElement("template");
    template.innerHTML = md.render(source);
    sanitize(template.content);
    enhance(template.content);
    target.replaceChildren(template.content);
  }

  async function copyText(text) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (err) {
      const area = el("textarea", { class: "sr-only", "aria-hidden": "true" });
      area.value = text;
      document.body.append(area);
      area.select();
      const ok = document.execCommand("copy");
      area.remove();
      return ok;
    }
  }

  async function copyWithFeedback(button, text, label) {
    const ok = await copyText(text);
    const span = button.querySelector("span");
    button.replaceChildren(icon(ok ? "check" : "copy"), ...(span ? [el("span", { text: ok ? "Copied" : "Copy failed" })] : []));
    button.setAttribute("aria-label", ok ? "Copied" : "Copying failed");
    button.classList.toggle("copied", ok);
    setTimeout(() => {
      button.replaceChildren(icon("copy"), ...(span ? [el("span", { text: label })] : []));
      button.setAttribute("aria-label", button.dataset.label || "Copy code");
      button.classList.remove("copied");
    }, 1500);
  }

  // -- sidebar ---------------------------------------------------------------
  // Lists the chats again, most recently active first (more = false), or appends the next page.
  async function loadSidebar(more = false) {
    const list = $("conversations");
    const query = new URLSearchParams({ limit: String(SIDEBAR_PAGE), order: "desc", order_by: "updated_at" });
    if (more && sidebarCursor) query.set("after", sidebarCursor);
    const run = ++sidebarRun;
    let page;
    try {
      page = await call("GET", `${API}/conversations?${query}`);
    } catch (err) {
      showError(err, "Your chats could not be listed");
      return;
    }
    if (run !== sidebarRun) return;
    const entries = page.data.map(sidebarEntry);
    if (more) list.append(...entries);
    else list.replaceChildren(...entries);
    sidebarCursor = page.last_id || sidebarCursor;
    $("older-chats").hidden = !page.has_more;
    $("no-conversations").hidden = list.children.length > 0;
    if (!searchResults.hidden) showSearch(true); // search results stay in the list's place
  }

  function sidebarEntry(conv) {
    const title = conv.metadata.title || "Untitled chat";
    const current = conv.id === conversationId;
    const link = el("a", { href: `/c/${encodeURIComponent(conv.id)}`, class: "title", text: title, title, "aria-current": current ? "page" : null });
    const item = el("li", { "data-id": conv.id, class: current ? "current" : null }, link);
    const rename = el("button", { type: "button", class: "icon rename", title: "Rename", "aria-label": `Rename ${title}` }, icon("rename"));
    const remove = el("button", { type: "button", class: "icon delete", title: "Delete", "aria-label": `Delete ${title}` }, icon("delete"));
    rename.addEventListener("click", () => startRename(item, conv));
    remove.addEventListener("click", () => removeConversation(conv, title));
    item.append(rename, remove);
    return item;
  }

  function startRename(item, conv) {
    const input = el("input", { class: "rename-input", value: conv.metadata.title || "", "aria-label": "New title", maxlength: "512" });
    const form = el("form", { class: "rename-form" }, input);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const title = input.value.trim();
      if (!title) {
        showNotice("A title cannot be empty.");
        return;
      }
      try {
        await call("POST", conversationUrl(conv.id), { metadata: { ...conv.metadata, title } });
        showNotice();
        if (conv.id === conversationId) setTitle(title);
      } catch (err) {
        showError(err, "The chat could not be renamed");
      }
      loadSidebar();
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Escape") loadSidebar();
    });
    item.replaceChildren(form);
    input.focus();
    input.select();
  }

  async function removeConversation(conv, title) {
    if (!window.confirm(`Delete “${title}” and all its messages and votes?`)) return;
    try {
      await call("DELETE", chatUrl(conv.id));
    } catch (err) {
      showError(err, "The chat could not be deleted");
      return;
    }
    if (conv.id === conversationId) window.location.assign("/");
    else loadSidebar();
  }

  function openSidebar(open) {
    const wasOpen = sidebar.classList.contains("open");
    sidebar.classList.toggle("open", open);
    backdrop.hidden = !open;
    document.querySelector("main").inert = open; // keyboard and screen readers stay in the drawer
    menuButton.setAttribute("aria-expanded", String(open));
    if (open) (sidebar.querySelector("#conversations li.current a") || $("new-chat")).focus();
    else if (wasOpen && narrow.matches) menuButton.focus();
  }

  menuButton.addEventListener("click", () => openSidebar(true));
  $("close-sidebar").addEventListener("click", () => openSidebar(false));
  backdrop.addEventListener("click", () => openSidebar(false));
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && sidebar.classList.contains("open")) openSidebar(false);
  });
  narrow.addEventListener("change", () => openSidebar(false));

  // -- search ----------------------------------------------------------------
  // The box searches the user's chats (GET /search) as they type; results
  // replace the chat list until the box is cleared. A result links to its
  // chat with ?item=, and the chat page then opens at that item.
  const searchBox = $("search-box");
  const searchResults = $("search-results");
  const searchStatus = $("search-status");
  const hitList = $("hits");
  const moreHits = $("more-hits");
  let searchTimer = null;
  let searchRun = 0; // answers of older searches are dropped
  let searchCursor = null;
  const NOTHING_TO_FIND = "Type a word to search for: “quotes” find a phrase, -word leaves a word out.";

  // A snippet from the API is HTML-escaped text with each match in <mark>:
  // parsed in an inert <template>, it is rebuilt from its text and marks only.
  function markedText(snippet) {
    const template = document.createElement("template");
    template.innerHTML = snippet;
    return [...template.content.childNodes].map((node) =>
      node.nodeName === "MARK" ? el("mark", { text: node.textContent }) : document.createTextNode(node.textContent),
    );
  }

  // A reply's snippet is its Markdown source: its emphasis, code and link
  // marks go, so "**9**" reads 9. The <mark>s are kept by working on the
  // snippet with each mark's ends as placeholders.
  const MARK_OPEN = "\uE000";
  const MARK_CLOSE = "\uE001";
  function plainSnippet(snippet) {
    const nodes = markedText(snippet);
    let text = nodes.map((n) => (n.nodeName === "MARK" ? MARK_OPEN + n.textContent + MARK_CLOSE : n.textContent)).join("");
    text = text
      .replace(/!?\[([^\]\n]*)\]\([^)\s]*\)/g, "$1") // [text](url) -> text
      .replace(/\*\*|__(?=\S)|(?<=\S)__|~~|`+/g, "") // strong, strike, code
      .replace(/(^|[\s(\uE000])[*_](?=[^\s*_])/g, "$1") // *emphasis* and _emphasis_
      .replace(/([^\s*_])[*_](?=[\s).,;:!?\uE001]|$)/g, "$1")
      .replace(/(^|\n)\s{0,3}(#{1,6}|>)\s+/g, "$1"); // headings, quotes
    const out = [];
    for (const [index, part] of text.split(/[\uE000\uE001]/).entries()) {
      if (!part) continue;
      out.push(index % 2 ? el("mark", { text: part }) : document.createTextNode(part));
    }
    return out;
  }

  function hitEntry(hit) {
    const conv = hit.conversation;
    const title = conv.metadata.title || "Untitled chat";
    const item = hit.item;
    const where = !item ? "title" : item.role === "assistant" ? "reply" : item.role === "user" ? "you" : item.type.replaceAll("_", " ");
    const href = `/c/${encodeURIComponent(conv.id)}` + (item ? `?item=${encodeURIComponent(item.id)}` : "");
    const link = el(
      "a",
      { href, class: "hit-link", "data-conversation": conv.id, "data-item": item ? item.id : null },
      el("span", { class: "hit-title", title }, el("span", { class: "hit-name", text: title }), el("span", { class: "hit-where", text: ` · ${where}` })),
      el("span", { class: "snippet" }, ...(item && item.role === "assistant" ? plainSnippet(hit.snippet) : markedText(hit.snippet))),
    );
    return el("li", {}, link);
  }

  function showSearch(on) {
    searchResults.hidden = !on;
    $("conversations").hidden = on;
    if (on) {
      $("no-conversations").hidden = true;
      $("older-chats").hidden = true;
    }
  }

  async function search(more = false) {
    const text = searchBox.value.trim();
    const run = ++searchRun;
    if (!text) {
      showSearch(false);
      loadSidebar();
      return;
    }
    showSearch(true);
    // The API refuses a query with nothing to find (only operators, only
    // -excluded words); say so here instead of asking it.
    const tokens = text.match(/"[^"]*"?|[^\s"]+/g) || [];
    if (!tokens.some((token) => !token.startsWith("-") && !/^or$/i.test(token) && /[\p{L}\p{N}]/u.test(token))) {
      hitList.replaceChildren();
      moreHits.hidden = true;
      searchStatus.textContent = NOTHING_TO_FIND;
      return;
    }
    const query = new URLSearchParams({ q: text, limit: "20" });
    if (more && searchCursor) query.set("after", searchCursor);
    if (!more) searchStatus.textContent = "Searching…";
    let page;
    try {
      page = await call("GET", `${API}/search?${query}`);
    } catch (err) {
      if (run !== searchRun) return;
      moreHits.hidden = true;
      if (!more) hitList.replaceChildren();
      if (err.status === 400 && err.data.error && err.data.error.param === "q") {
        searchStatus.textContent = NOTHING_TO_FIND;
      } else if (err.status === 501) {
        searchStatus.textContent = "Search is not available on this server.";
      } else {
        searchStatus.replaceChildren(...describe(err, "The search failed"));
      }
      return;
    }
    if (run !== searchRun) return;
    const entries = page.data.map(hitEntry);
    if (more) hitList.append(...entries);
    else hitList.replaceChildren(...entries);
    searchCursor = page.last_id;
    moreHits.hidden = !page.has_more;
    if (hitList.children.length) searchStatus.textContent = "";
    else searchStatus.textContent = page.has_more ? "No match in your newest chats yet." : `No chat mentions “${text}”.`;
  }

  searchBox.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => search(), 250);
  });
  searchBox.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && searchBox.value) {
      event.stopPropagation(); // the first Escape clears the box, the next closes the drawer
      searchBox.value = "";
      clearTimeout(searchTimer);
      search();
    }
  });
  $("search").addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(searchTimer);
    search();
  });
  moreHits.addEventListener("click", () => search(true));

  // Opened from a search result (?item=): load older pages until that item is
  // shown, then bring it into view and mark it.
  async function openAt(itemId) {
    const find = () => log.querySelector(`.item[data-id="${CSS.escape(itemId)}"]`);
    let node = find();
    while (!node && hasMore) {
      await loadOlder(100);
      node = find();
    }
    if (!node) {
      showNotice("That message is no longer in this chat.");
      return;
    }
    if (node.tagName === "DETAILS") node.open = true;
    node.classList.add("hit");
    node.scrollIntoView({ block: "center" });
  }

  // -- items -----------------------------------------------------------------
  function textOf(item) {
    if (typeof item.content === "string") return item.content;
    return (item.content || []).map((part) => part.text || part.refusal || "").join("");
  }

  function folded(item, kind, summary, ...bodies) {
    return el(
      "details",
      { class: `item aux ${kind}`, "data-id": item.id, "data-response": item.response_id },
      el("summary", { text: summary }),
      ...bodies.filter((body) => body !== undefined && body !== null && body !== "").map((body) => el("pre", { text: String(body) })),
    );
  }

  function renderItem(item) {
    switch (item.type) {
      case "message":
        return renderMessage(item);
      case "reasoning":
        return folded(item, "reasoning", "Reasoning", [...(item.summary || []), ...(item.content || [])].map((s) => s.text).join("\n") || "(hidden)");
      case "function_call":
        return folded(item, "function-call", `Function call: ${item.name}`, item.arguments);
      case "function_call_output":
        return folded(item, "function-output", "Function output", typeof item.output === "string" ? item.output : JSON.stringify(item.output));
      case "mcp_call":
        return folded(item, "mcp-call", `MCP call: ${item.server_label} / ${item.name}`, item.arguments, item.error || item.output);
      default:
        return folded(item, "other", item.type, JSON.stringify(item, null, 2));
    }
  }

  function who(item) {
    return el("div", { class: "who", text: `Assistant${item.model ? ` · ${item.model}` : ""}` });
  }

  function renderMessage(item) {
    const role = item.role || "user";
    const text = textOf(item);
    if (role !== "assistant") {
      const label = role === "user" ? "You" : role;
      return el("div", { class: `item message ${role}`, "data-id": item.id }, el("div", { class: "who", text: label }), el("div", { class: "text", text }));
    }
    const incomplete = item.status === "incomplete";
    const body = el("div", { class: "text markdown" });
    renderMarkdown(body, text);
    const node = el("article", { class: `item message assistant${incomplete ? " incomplete" : ""}`, "data-id": item.id, "data-response": item.response_id }, who(item), body);
    if (incomplete) node.append(el("div", { class: "stopped-note", text: text ? "Stopped: this reply is incomplete." : "Stopped before any text." }));
    if (item.response_id) node.append(...replyActions(item.response_id, text));
    return node;
  }

  // -- reply actions: copy, vote, regenerate ------------------------------------------
  const voteViews = new Map(); // response ID -> show(vote or null)

  function replyActions(responseId, text) {
    const feedbackUrl = `${API}/responses/${encodeURIComponent(responseId)}/feedback`;
    const copy = el("button", { type: "button", class: "copy-reply", title: "Copy", "aria-label": "Copy this reply", "data-label": "Copy this reply" }, icon("copy"));
    copy.addEventListener("click", () => copyWithFeedback(copy, text));
    const up = el("button", { type: "button", class: "vote up", "aria-pressed": "false", title: "Good reply", "aria-label": "Good reply", text: "👍" });
    const down = el("button", { type: "button", class: "vote down", "aria-pressed": "false", title: "Bad reply", "aria-label": "Bad reply", text: "👎" });
    const again = el("button", { type: "button", class: "regenerate", title: "Regenerate", "aria-label": "Regenerate this reply", hidden: true }, icon("regenerate"));
    again.addEventListener("click", () => regenerate(responseId));
    const status = el("span", { class: "vote-status", role: "status" });
    const comment = el("input", { class: "comment", placeholder: "Tell us more (optional), then Enter", maxlength: "4096", "aria-label": "Comment on this reply" });
    const save = el("button", { type: "button", class: "save-comment", text: "Save" });
    const commentRow = el("div", { class: "comment-row", hidden: true }, comment, save);
    const actions = el("div", { class: "actions", "data-response": responseId }, copy, up, down, again, status);
    let rating = null;

    function show(vote) {
      rating = vote ? vote.rating : null;
      up.setAttribute("aria-pressed", String(rating === "positive"));
      down.setAttribute("aria-pressed", String(rating === "negative"));
      commentRow.hidden = !rating;
      if (!rating) comment.value = "";
      else if (vote.comment && !comment.value) comment.value = vote.comment;
    }

    function report(message, isError = false) {
      status.classList.toggle("error", isError);
      status.replaceChildren(...(Array.isArray(message) ? message : [message]));
    }

    async function post(body, done) {
      report("Saving…");
      try {
        const opening = commentRow.hidden;
        show(await call("POST", feedbackUrl, body));
        report(done);
        // The box it opens may be below the log's edge, behind the composer.
        if (opening && !commentRow.hidden) commentRow.scrollIntoView({ block: "nearest" });
      } catch (err) {
        const words = err.status === 404
          ? ["This reply no longer exists; it was deleted, perhaps in another tab. Reload the page."]
          : describe(err, "Not saved");
        report(words, true);
      }
    }

    // A second click on the same vote takes it back: the feedback is deleted.
    // A 404 means there was none left to delete (taken back in another tab, or
    // the reply deleted with its chat), which is what was asked for.
    async function takeBack() {
      report("Removing…");
      try {
        await call("DELETE", feedbackUrl);
      } catch (err) {
        if (err.status !== 404) {
          report(describe(err, "Not removed"), true);
          return;
        }
      }
      show(null);
      report("Vote removed");
    }

    function vote(newRating) {
      if (rating === newRating) {
        takeBack();
        return;
      }
      const body = { rating: newRating };
      if (comment.value.trim()) body.comment = comment.value.trim();
      post(body, "Thanks for the feedback");
    }

    function saveComment() {
      if (!rating) return;
      const body = { rating };
      if (comment.value.trim()) body.comment = comment.value.trim();
      post(body, "Comment saved");
    }

    up.addEventListener("click", () => vote("positive"));
    down.addEventListener("click", () => vote("negative"));
    save.addEventListener("click", saveComment);
    comment.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.isComposing && event.keyCode !== 229) {
        event.preventDefault();
        saveComment();
      }
    });
    voteViews.set(responseId, show);
    return [actions, commentRow];
  }

  // The caller's votes on these replies, in one request.
  async function loadVotes(responseIds) {
    const ids = [...new Set(responseIds)];
    if (!ids.length) return;
    const query = new URLSearchParams(ids.map((id) => ["response_id", id]));
    try {
      const votes = await call("GET", `/chat/votes?${query}`);
      const stick = nearBottom();
      for (const id of ids) {
        const show = voteViews.get(id);
        if (show) show(votes.data[id] || null);
      }
      if (stick) log.scrollTop = log.scrollHeight; // a comment box may have appeared at the end
    } catch (err) {
      showError(err, "Your votes could not be loaded");
    }
  }

  // Only the chat's latest reply can be regenerated: its button alone is shown.
  function updateRegenerate() {
    for (const button of log.querySelectorAll(".regenerate")) button.hidden = true;
    const items = log.querySelectorAll(".item:not([hidden])");
    const last = items[items.length - 1];
    if (!last || !last.dataset.response || active) return;
    const reply = log.querySelector(`.message.assistant[data-response="${CSS.escape(last.dataset.response)}"]`);
    const button = reply && reply.querySelector(".regenerate");
    if (button) button.hidden = false;
  }

  // -- the conversation, page by page ------------------------------------------
  async function loadOlder(size = PAGE) {
    if (loading || !hasMore || !conversationId) return;
    loading = true;
    logStart.textContent = "Loading older messages…";
    const query = new URLSearchParams({ limit: String(size), order: "desc" });
    if (cursor) query.set("after", cursor);
    try {
      const page = await call("GET", `${conversationUrl(conversationId)}/items?${query}`);
      const fromBottom = log.scrollHeight - log.scrollTop;
      logStart.after(...page.data.slice().reverse().map(renderItem));
      log.scrollTop = log.scrollHeight - fromBottom;
      cursor = page.last_id || cursor;
      hasMore = page.has_more;
      logStart.textContent = hasMore ? "Scroll up for older messages." : "This is the beginning of this chat.";
      updateRegenerate();
      loadVotes(page.data.filter((i) => i.type === "message" && i.role === "assistant" && i.response_id).map((i) => i.response_id));
    } catch (err) {
      logStart.textContent = "";
      showError(err, "Messages could not be loaded");
      hasMore = false;
    } finally {
      loading = false;
    }
  }

  async function loadFirstPages() {
    await loadOlder();
    log.scrollTop = log.scrollHeight;
    // Keep loading until the log can scroll, so the user has something to scroll back through.
    while (hasMore && log.scrollHeight <= log.clientHeight) await loadOlder();
  }

  log.addEventListener("scroll", () => {
    if (log.scrollTop < 120) loadOlder();
  });

  const nearBottom = () => log.scrollHeight - log.scrollTop - log.clientHeight < 120;

  // -- a streaming reply ---------------------------------------------------------
  // The placeholder shown while a reply streams: folded items go before it,
  // text into it; at the end it is replaced by the stored items.
  function pendingReply(model) {
    const body = el("div", { class: "text markdown" }, el("span", { class: "typing", "aria-label": "The assistant is writing" }, el("i"), el("i"), el("i")));
    let label = who({ model });
    const node = el("article", { class: "item message assistant pending" }, label, body);
    const extra = [];
    let text = "";
    let timer = null;

    function paint() {
      timer = null;
      const stick = nearBottom();
      renderMarkdown(body, text);
      if (stick) log.scrollTop = log.scrollHeight;
    }

    return {
      node,
      setModel(name) {
        const next = who({ model: name });
        label.replaceWith(next);
        label = next;
      },
      add(item) {
        const stick = nearBottom();
        const child = renderItem(item);
        node.before(child);
        extra.push(child);
        if (stick) log.scrollTop = log.scrollHeight;
      },
      append(piece) {
        text += piece;
        if (!timer) timer = setTimeout(paint, 40);
      },
      finish(items) {
        clearTimeout(timer);
        const stick = nearBottom();
        for (const child of extra) child.remove();
        // The turn's items, but for those already shown (the message you sent).
        const shown = (item) => log.querySelector(`.item[data-id="${CSS.escape(item.id)}"]`);
        node.replaceWith(...items.filter((item) => !shown(item)).map(renderItem));
        if (stick) log.scrollTop = log.scrollHeight;
      },
      drop() {
        clearTimeout(timer);
        for (const child of extra) child.remove();
        node.remove();
      },
    };
  }

  function setBusy(busy) {
    sendButton.classList.toggle("busy", busy);
    sendButton.setAttribute("aria-label", busy ? "Stop the reply" : "Send");
    sendButton.title = busy ? "Stop" : "Send";
    sendButton.removeAttribute("aria-disabled");
    log.setAttribute("aria-busy", String(busy));
    updateRegenerate();
  }

  // POST a turn to `url` and follow its events until the last one. Resolves
  // with the "done" data, with {error} when no reply came (nothing of the
  // turn was stored then), or null when the stream broke off; throws a
  // RequestError when the request itself failed (nothing was stored then).
  // The text of a POST's answer as it arrives. XMLHttpRequest, not fetch:
  // Chromium reports a fetch whose body is read as a stream as
  // net::ERR_ABORTED (canceled) even when it was read to its end, so every
  // reply showed as failed in DevTools; an XMLHttpRequest's progress events
  // stream the same text and the request finishes as loaded. Resolves with
  // the request once it has ended, been aborted or broken off.
  function postForText(url, body, onText, bind) {
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      let seen = 0;
      const take = () => {
        if (xhr.status < 200 || xhr.status > 299) return; // an error's body is read whole
        const text = xhr.responseText;
        if (text.length > seen) onText(text.slice(seen));
        seen = text.length;
      };
      xhr.open("POST", url);
      xhr.setRequestHeader("Content-Type", "application/json");
      xhr.setRequestHeader("Accept", "text/event-stream");
      xhr.onprogress = take;
      xhr.onload = () => {
        take();
        resolve(xhr);
      };
      xhr.onerror = xhr.onabort = () => resolve(xhr);
      bind(() => xhr.abort());
      xhr.send(JSON.stringify(body));
    });
  }

  async function stream(url, body, reply, onStart) {
    active = { abort: () => {}, streamId: null, stopping: false };
    setBusy(true);
    let outcome;
    let started = false;
    let broken = null; // an exception from an event's handling
    try {
      const handle = (event, data) => {
        if (event === "start") {
          started = true;
          active.streamId = data.stream_id;
          reply.setModel(data.model);
          onStart(data);
          if (active.stopping) requestStop();
        } else if (event === "item") reply.add(data.item);
        else if (event === "delta") reply.append(data.text);
        else if (event === "done" || event === "error") outcome = { event, data };
      };
      let buffer = "";
      const onText = (text) => {
        if (broken) return;
        buffer += text;
        let cut;
        try {
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            let event = "message";
            const data = [];
            for (const line of block.split("\n")) {
              if (line.startsWith("event: ")) event = line.slice(7);
              else if (line.startsWith("data: ")) data.push(line.slice(6));
            }
            handle(event, JSON.parse(data.join("\n") || "{}"));
          }
        } catch (err) {
          broken = err;
          active.abort();
        }
      };
      const current = active;
      const xhr = await postForText(url, body, onText, (abort) => { current.abort = abort; });
      if (broken) throw broken;
      if (xhr.status === 0 && !started && !outcome) throw new RequestError(0, "the server cannot be reached");
      if (xhr.status && (xhr.status < 200 || xhr.status > 299)) {
        let data = {};
        try {
          data = JSON.parse(xhr.responseText);
        } catch (err) {
          // not JSON: the status says it
        }
        const error = new RequestError(xhr.status, (data.error && data.error.message) || `HTTP ${xhr.status}`, data);
        error.friendly = true;
        throw error;
      }
    } finally {
      clearTimeout(active.fallback);
      active = null;
      setBusy(false);
    }
    if (!outcome && started) {
      // The stream ended without its last event: the server kept what it had
      // generated, so show the chat as stored.
      reply.drop();
      showNotice("The reply was cut off before it finished. What was generated is kept: reload the page to see it.");
      return null;
    }
    if (!outcome) throw new RequestError(0, "the server cannot be reached");
    if (outcome.event === "error") {
      reply.drop();
      return { error: outcome.data.message || "no reply came" };
    }
    reply.finish(outcome.data.items);
    if (outcome.data.error) showNotice(`The reply stopped early: ${outcome.data.error}`);
    return outcome.data;
  }

  async function requestStop() {
    if (!active) return;
    active.stopping = true;
    // Not disabled: a disabled button would drop the keyboard's focus to <body>.
    sendButton.setAttribute("aria-disabled", "true");
    sendButton.setAttribute("aria-label", "Stopping the reply");
    if (!active.streamId) return; // asked again as soon as the stream starts
    const current = active;
    // If the server cannot stop it (another process serves the stream), close the stream instead.
    current.fallback = setTimeout(() => current.abort(), 5000);
    try {
      await call("POST", `/chat/streams/${encodeURIComponent(current.streamId)}/stop`);
    } catch (err) {
      current.abort();
    }
  }

  // -- sending -----------------------------------------------------------------
  function adopt(conversation) {
    conversationId = conversation.id;
    window.history.replaceState(null, "", `/c/${encodeURIComponent(conversation.id)}`);
    hasMore = false;
    logStart.textContent = "This is the beginning of this chat.";
  }

  async function send() {
    if (active) return; // a reply is streaming: Enter keeps what is typed; the button stops it
    const text = box.value;
    if (!text.trim()) {
      showNotice("Type a message first: an empty message is not sent.");
      return;
    }
    if (text.length > MAX_CHARS) {
      showNotice(`Your message is ${text.length.toLocaleString("en")} characters long; the limit is ${MAX_CHARS.toLocaleString("en")}. Shorten it.`);
      return;
    }
    showNotice();
    box.value = "";
    resize();
    const mine = renderMessage({ role: "user", content: text });
    mine.classList.add("sending");
    const reply = pendingReply();
    log.append(mine, reply.node);
    log.scrollTop = log.scrollHeight;
    const url = conversationId ? chatUrl(conversationId, "/messages") : "/chat/messages";
    let started = false;
    let created = false;
    // Nothing was stored: take the message back into the box, unless something new was typed.
    const takeBack = () => {
      mine.remove();
      if (!box.value) {
        box.value = text;
        resize();
      }
      if (created) {
        // The new chat was deleted again: this page is a new chat once more.
        conversationId = null;
        window.history.replaceState(null, "", "/");
        setTitle("");
        logStart.textContent = "Start a new chat: type a message below.";
      }
    };
    try {
      const result = await stream(url, { text }, reply, (start) => {
        started = true;
        mine.classList.remove("sending");
        if (start.user_item) mine.dataset.id = start.user_item.id;
        if (start.conversation.created) {
          created = true;
          adopt(start.conversation);
          loadSidebar(); // the chat exists from now on
        }
        setTitle(start.conversation.title);
      });
      if (result && result.error) {
        takeBack();
        showNotice(`Your message was not sent, as no reply came: ${result.error}`);
      }
      loadSidebar();
    } catch (err) {
      reply.drop();
      if (!started) {
        takeBack();
        showError(err, "Your message was not sent");
      } else {
        showError(err, "No reply came");
      }
    }
    updateRegenerate();
    if (document.activeElement === sendButton && !coarsePointer.matches) box.focus();
  }

  async function regenerate(responseId) {
    if (active || !conversationId) return;
    showNotice();
    const old = [...log.querySelectorAll(`.item[data-response="${CSS.escape(responseId)}"]`)];
    for (const node of old) node.hidden = true;
    const reply = pendingReply();
    log.append(reply.node);
    log.scrollTop = log.scrollHeight;
    try {
      const result = await stream(chatUrl(conversationId, "/regenerate"), { response_id: responseId }, reply, () => {});
      if (result && !result.error) {
        for (const node of old) node.remove();
        // The input it answered was sent again: its old copy goes too.
        for (const id of result.replaced || []) {
          const node = log.querySelector(`.item[data-id="${CSS.escape(id)}"]`);
          if (node) node.remove();
        }
        loadSidebar();
      } else {
        for (const node of old) node.hidden = false;
        if (result) showNotice(`No new reply came: ${result.error}`);
      }
    } catch (err) {
      reply.drop();
      for (const node of old) node.hidden = false;
      showError(err, "The reply could not be regenerated");
    }
    updateRegenerate();
  }

  // -- the composer ------------------------------------------------------------
  function resize() {
    box.style.height = "auto";
    box.style.height = `${Math.min(box.scrollHeight + 2, window.innerHeight * 0.4)}px`;
  }

  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    if (!active) send();
    else if (!active.stopping) requestStop();
  });
  box.addEventListener("input", resize);
  box.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.shiftKey) return;
    // An Enter that confirms an IME composition (Japanese, Chinese...) is not a send.
    if (event.isComposing || event.keyCode === 229) return;
    // On touch screens Enter adds a line; the button sends.
    if (coarsePointer.matches) return;
    event.preventDefault();
    send();
  });
  $("older-chats").addEventListener("click", () => loadSidebar(true));
  $("skip-to-message").addEventListener("click", (event) => {
    event.preventDefault();
    if (sidebar.classList.contains("open")) openSidebar(false);
    box.focus();
  });

  loadSidebar();
  const hitItem = new URLSearchParams(window.location.search).get("item");
  if (conversationId) loadFirstPages().then(() => hitItem && openAt(hitItem));
  else logStart.textContent = "Start a new chat: type a message below.";
  resize();
  // Ready to type, but on a touch screen, where focus would open the keyboard over the page.
  if (!coarsePointer.matches) box.focus({ preventScroll: true });
  root.dataset.ready = "true"; // the handlers are in place (tests wait for this)
})();
