// The chat page's behaviour. The sidebar and the conversation come from the
// extension's JSON API (data-api, "/v1"); only sending a message and deleting
// a chat go to the app's own /chat routes. Every stored string reaches the
// page through textContent, never as HTML.
"use strict";

(() => {
  const root = document.getElementById("app");
  const API = root.dataset.api;
  const MAX_CHARS = Number(root.dataset.maxChars);
  const PAGE = 20;
  const $ = (id) => document.getElementById(id);
  const log = $("log");
  const logStart = $("log-start");
  const notice = $("notice");
  const box = $("message");
  const sendButton = $("send");

  let conversationId = root.dataset.conversation || null;
  let cursor = null; // the oldest item shown: the next page starts after it
  let hasMore = true;
  let loading = false;

  // -- helpers ---------------------------------------------------------------
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value);
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  function showNotice(message) {
    notice.textContent = message || "";
    notice.hidden = !message;
  }

  async function call(method, url, body) {
    const options = { method, headers: {}, credentials: "same-origin" };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, options);
    } catch (err) {
      throw new Error("The server cannot be reached: check that the app is running.");
    }
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error((data.error && data.error.message) || `The request failed (HTTP ${response.status}).`);
      error.status = response.status;
      error.data = data;
      throw error;
    }
    return data;
  }

  const conversationUrl = (id) => `${API}/conversations/${encodeURIComponent(id)}`;

  // -- sidebar ---------------------------------------------------------------
  const SIDEBAR_PAGE = 50;
  let sidebarCursor = null;

  // Lists the newest chats again (more = false) or appends the next older page.
  async function loadSidebar(more = false) {
    const list = $("conversations");
    const older = $("older-chats");
    const query = new URLSearchParams({ limit: String(SIDEBAR_PAGE), order: "desc" });
    if (more && sidebarCursor) query.set("after", sidebarCursor);
    let page;
    try {
      page = await call("GET", `${API}/conversations?${query}`);
    } catch (err) {
      showNotice(`Your chats could not be listed: ${err.message}`);
      return;
    }
    const entries = page.data.map(sidebarEntry);
    if (more) list.append(...entries);
    else list.replaceChildren(...entries);
    sidebarCursor = page.last_id || sidebarCursor;
    older.hidden = !page.has_more;
    $("no-conversations").hidden = list.children.length > 0;
  }

  function sidebarEntry(conv) {
    const title = conv.metadata.title || "Untitled chat";
    const link = el("a", { href: `/c/${encodeURIComponent(conv.id)}`, class: "title", text: title, title });
    const item = el("li", { "data-id": conv.id }, link);
    if (conv.id === conversationId) item.classList.add("current");
    const rename = el("button", { type: "button", class: "icon rename", title: "Rename", "aria-label": `Rename ${title}`, text: "✎" });
    const remove = el("button", { type: "button", class: "icon delete", title: "Delete", "aria-label": `Delete ${title}`, text: "🗑" });
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
        showNotice("");
        if (conv.id === conversationId) document.title = `${title} · flask-smg-history example`;
      } catch (err) {
        showNotice(`The chat could not be renamed: ${err.message}`);
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
      await call("DELETE", `/chat/${encodeURIComponent(conv.id)}`);
    } catch (err) {
      showNotice(`The chat could not be deleted: ${err.message}`);
      return;
    }
    if (conv.id === conversationId) window.location.assign("/");
    else loadSidebar();
  }

  async function newConversation() {
    const conv = await call("POST", `${API}/conversations`, { metadata: {} });
    conversationId = conv.id;
    window.history.replaceState(null, "", `/c/${encodeURIComponent(conv.id)}`);
    hasMore = false;
    logStart.textContent = "This is the beginning of this chat.";
    return conv;
  }

  // -- items -----------------------------------------------------------------
  function textOf(item) {
    if (typeof item.content === "string") return item.content;
    return (item.content || []).map((part) => part.text || part.refusal || "").join("");
  }

  function folded(kind, summary, ...bodies) {
    return el(
      "details",
      { class: `item aux ${kind}` },
      el("summary", { text: summary }),
      ...bodies.filter((body) => body !== undefined && body !== null && body !== "").map((body) => el("pre", { text: String(body) })),
    );
  }

  function renderItem(item) {
    switch (item.type) {
      case "message":
        return renderMessage(item);
      case "reasoning":
        return folded("reasoning", "Reasoning", (item.summary || []).map((s) => s.text).join("\n") || "(hidden)");
      case "function_call":
        return folded("function-call", `Function call: ${item.name}`, item.arguments);
      case "function_call_output":
        return folded("function-output", "Function output", typeof item.output === "string" ? item.output : JSON.stringify(item.output));
      case "mcp_call":
        return folded("mcp-call", `MCP call: ${item.server_label} / ${item.name}`, item.arguments, item.error || item.output);
      default:
        return folded("other", item.type, JSON.stringify(item, null, 2));
    }
  }

  function renderMessage(item) {
    const role = item.role || "user";
    const node = el("div", { class: `item message ${role}`, "data-id": item.id });
    const who = role === "assistant" ? `Assistant${item.model ? ` · ${item.model}` : ""}` : role === "user" ? "You" : role;
    node.append(el("div", { class: "who", text: who }), el("div", { class: "text", text: textOf(item) }));
    if (role === "assistant" && item.response_id) node.append(voteBox(item.response_id));
    return node;
  }

  // -- feedback --------------------------------------------------------------
  function voteBox(responseId) {
    const url = `${API}/responses/${encodeURIComponent(responseId)}/feedback`;
    const up = el("button", { type: "button", class: "vote up", "aria-pressed": "false", title: "Good reply", text: "👍" });
    const down = el("button", { type: "button", class: "vote down", "aria-pressed": "false", title: "Bad reply", text: "👎" });
    const comment = el("input", { class: "comment", placeholder: "Optional comment", maxlength: "4096", "aria-label": "Comment" });
    const save = el("button", { type: "button", class: "save-comment", text: "Save comment" });
    const status = el("span", { class: "vote-status", role: "status" });
    const box = el("div", { class: "votes", "data-response": responseId }, up, down, comment, save, status);
    let rating = null;

    function show(fb) {
      rating = fb ? fb.rating : null;
      up.setAttribute("aria-pressed", String(rating === "positive"));
      down.setAttribute("aria-pressed", String(rating === "negative"));
      if (fb && fb.comment && !comment.value) comment.value = fb.comment;
    }

    async function submit(newRating) {
      status.textContent = "Saving…";
      status.classList.remove("error");
      try {
        const body = { rating: newRating };
        if (comment.value.trim()) body.comment = comment.value.trim();
        show(await call("POST", url, body));
        status.textContent = "Saved";
      } catch (err) {
        status.classList.add("error");
        status.textContent =
          err.status === 404
            ? "This reply no longer exists: it was deleted, perhaps in another tab. Reload the page."
            : `Your vote was not saved: ${err.message}`;
      }
    }

    up.addEventListener("click", () => submit("positive"));
    down.addEventListener("click", () => submit("negative"));
    save.addEventListener("click", () => {
      if (!rating) {
        status.classList.add("error");
        status.textContent = "Choose 👍 or 👎 first, then save your comment.";
        return;
      }
      submit(rating);
    });
    call("GET", url).then(show, (err) => {
      if (err.status !== 404) status.textContent = `Your vote could not be loaded: ${err.message}`;
    });
    return box;
  }

  // -- the conversation, page by page ------------------------------------------
  async function loadOlder() {
    if (loading || !hasMore || !conversationId) return;
    loading = true;
    logStart.textContent = "Loading older messages…";
    const query = new URLSearchParams({ limit: String(PAGE), order: "desc" });
    if (cursor) query.set("after", cursor);
    try {
      const page = await call("GET", `${conversationUrl(conversationId)}/items?${query}`);
      const fromBottom = log.scrollHeight - log.scrollTop;
      logStart.after(...page.data.slice().reverse().map(renderItem));
      log.scrollTop = log.scrollHeight - fromBottom;
      cursor = page.last_id || cursor;
      hasMore = page.has_more;
      logStart.textContent = hasMore ? "Scroll up for older messages." : "This is the beginning of this chat.";
    } catch (err) {
      logStart.textContent = "";
      showNotice(`Messages could not be loaded: ${err.message}`);
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

  // -- sending -----------------------------------------------------------------
  async function send(event) {
    event.preventDefault();
    if (sendButton.disabled) return;
    const text = box.value;
    if (!text.trim()) {
      showNotice("Type a message first: an empty message is not sent.");
      return;
    }
    if (text.length > MAX_CHARS) {
      showNotice(`Your message is ${text.length.toLocaleString("en")} characters long; the limit is ${MAX_CHARS.toLocaleString("en")}. Shorten it.`);
      return;
    }
    showNotice("");
    sendButton.disabled = true;
    const pending = el("div", { class: "item message assistant pending", text: "Waiting for the reply…" });
    try {
      const created = !conversationId;
      if (created) await newConversation();
      log.append(pending);
      log.scrollTop = log.scrollHeight;
      const result = await call("POST", `/chat/${encodeURIComponent(conversationId)}/messages`, { text });
      pending.replaceWith(...result.items.map(renderItem));
      box.value = "";
      loadSidebar();
    } catch (err) {
      const stored = err.data && err.data.items;
      if (stored) {
        // The message was stored but no reply came: show it, as a reload would.
        pending.replaceWith(...stored.map(renderItem));
        box.value = "";
        showNotice(`Your message was saved, but no reply came: ${err.message}`);
      } else {
        pending.remove();
        showNotice(`Your message was not sent: ${err.message}`);
      }
    } finally {
      sendButton.disabled = false;
      log.scrollTop = log.scrollHeight;
      box.focus();
    }
  }

  $("composer").addEventListener("submit", send);
  $("older-chats").addEventListener("click", () => loadSidebar(true));
  box.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) send(event);
  });
  $("new-chat").addEventListener("click", async () => {
    try {
      const conv = await newConversation();
      window.location.assign(`/c/${encodeURIComponent(conv.id)}`);
    } catch (err) {
      showNotice(`A new chat could not be started: ${err.message}`);
    }
  });

  loadSidebar();
  if (conversationId) loadFirstPages();
  else logStart.textContent = "Start a new chat: type a message below.";
})();
