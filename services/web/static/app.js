// Tidings reference web page: progressive enhancement over server-rendered
// pages. Every call goes to the HTTP/JSON API under /v1/ with the session
// cookie (HttpOnly: this script never sees the token) and the CSRF token.
// User text only ever reaches the page through textContent, never as HTML.
(function () {
  "use strict";

  var meta = function (name) {
    var el = document.querySelector('meta[name="' + name + '"]');
    return el ? el.getAttribute("content") : "";
  };
  var csrf = meta("csrf-token");
  var me = meta("tidings-user");

  function api(method, path, body) {
    var opts = { method: method, credentials: "same-origin", headers: { "X-CSRF-Token": csrf, "Accept": "application/json" } };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    return fetch(path, opts).then(function (resp) {
      return resp.json().then(function (data) {
        if (!resp.ok) {
          var err = new Error(data && data.message ? data.message : "request failed");
          err.status = data;
          throw err;
        }
        return data;
      });
    });
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }

  // safeURL mirrors the server's rule: only absolute http(s) URLs are links.
  function safeURL(u) {
    try {
      var p = new URL(u);
      return (p.protocol === "http:" || p.protocol === "https:") && p.host !== "";
    } catch (e) {
      return false;
    }
  }

  function link(href, text, external) {
    var a = el("a", null, text);
    a.href = href;
    if (external) {
      a.rel = "noopener noreferrer nofollow";
      a.target = "_blank";
    }
    return a;
  }

  function personHref(id) { return "/people/" + encodeURIComponent(id); }
  function recordHref(ref) { return "/records/" + encodeURIComponent(ref.type) + "/" + encodeURIComponent(ref.externalId); }

  function initials(name) {
    return name.split(/\s+/).filter(Boolean).slice(0, 2).map(function (w) { return Array.from(w)[0]; }).join("").toUpperCase();
  }

  // textNodes splits text into plain runs, @mentions of the mentioned users
  // and http(s) URLs, as the server's segments does.
  function appendText(p, text, mentions) {
    var re = /(https?:\/\/[^\s<>"']+)|@([A-Za-z0-9][A-Za-z0-9._@-]{0,63})/g;
    var pos = 0, m;
    while ((m = re.exec(text)) !== null) {
      var whole = m[0], href = null, shown = whole;
      if (m[1]) {
        shown = m[1].replace(/[.,;:!?)]+$/, "");
        if (safeURL(shown)) { href = shown; }
      } else {
        var id = m[2].replace(/\.+$/, "");
        if (mentions.indexOf(id) >= 0) { shown = "@" + id; href = personHref(id); }
      }
      if (!href) { continue; }
      if (m.index > pos) { p.appendChild(document.createTextNode(text.slice(pos, m.index))); }
      p.appendChild(link(href, shown, href.charAt(0) !== "/"));
      pos = m.index + shown.length;
      re.lastIndex = pos;
    }
    if (pos < text.length) { p.appendChild(document.createTextNode(text.slice(pos))); }
  }

  function timeText(iso) {
    var d = (Date.now() - new Date(iso).getTime()) / 1000;
    if (d < 60) { return "just now"; }
    if (d < 3600) { var m = Math.floor(d / 60); return m + (m === 1 ? " minute" : " minutes") + " ago"; }
    if (d < 86400) { var h = Math.floor(d / 3600); return h + (h === 1 ? " hour" : " hours") + " ago"; }
    return new Date(iso).toLocaleDateString();
  }

  // renderItem builds the markup of templates/_item.html for a FeedItem.
  function renderItem(item) {
    var a = item.activity || {};
    var li = el("li", "item fresh");
    li.dataset.id = a.id;
    var name = a.actor ? a.actor.id : "", href = null;
    if (item.actorProfile && item.actorProfile.userId) {
      name = item.actorProfile.displayName || item.actorProfile.userId;
      href = personHref(item.actorProfile.userId);
    } else if (a.actor && a.actor.kind === "CALLER_KIND_EMPLOYEE") {
      href = personHref(a.actor.id);
    }
    var art = el("article");
    art.setAttribute("aria-label", "Post by " + name);
    var av = el("div", "avatar", initials(name));
    av.setAttribute("aria-hidden", "true");
    art.appendChild(av);
    var body = el("div", "body");
    var metaP = el("p", "meta");
    if (href) { var actor = link(href, name); actor.className = "actor"; metaP.appendChild(actor); } else { metaP.appendChild(el("span", "actor", name)); }
    if (a.verb && a.verb !== "posted") { metaP.appendChild(el("span", "verb", a.verb.replace(/_/g, " "))); }
    var ref = (item.record && item.record.ref) || a.record;
    if (ref && ref.type) {
      metaP.appendChild(el("span", "on", "on"));
      var title = item.record && item.record.title ? item.record.title : ref.type + "/" + ref.externalId;
      var rl = link(recordHref(ref), title);
      rl.className = "record";
      metaP.appendChild(rl);
    }
    if (a.createTime) {
      var t = el("time", null, timeText(a.createTime));
      t.setAttribute("datetime", a.createTime);
      metaP.appendChild(t);
    }
    body.appendChild(metaP);
    if (a.text) {
      var p = el("p", "text");
      appendText(p, a.text, a.mentionUserIds || []);
      body.appendChild(p);
    }
    if (a.fieldChanges && a.fieldChanges.length) {
      var ul = el("ul", "changes");
      a.fieldChanges.forEach(function (c) {
        var li2 = el("li");
        li2.appendChild(el("span", "field", c.field));
        li2.appendChild(document.createTextNode(": "));
        li2.appendChild(el("del", null, c.oldValue));
        li2.appendChild(document.createTextNode(" → "));
        li2.appendChild(el("ins", null, c.newValue));
        ul.appendChild(li2);
      });
      body.appendChild(ul);
    }
    if (a.links && a.links.length) {
      var ll = el("ul", "links");
      a.links.forEach(function (l) {
        var li3 = el("li");
        var text = l.title || l.url;
        li3.appendChild(safeURL(l.url) ? link(l.url, text, true) : el("span", "unsafe-link", text));
        ll.appendChild(li3);
      });
      body.appendChild(ll);
    }
    body.appendChild(conversationBlock(a.id));
    art.appendChild(body);
    li.appendChild(art);
    return li;
  }

  // conversationBlock builds the "conversation" block of
  // templates/_item.html for a new item: no comments or reactions yet, the
  // like and comment forms (plain forms, back to the home page).
  function conversationBlock(id) {
    var box = el("div", "conversation");
    var csrf = meta("csrf-token");
    if (!csrf || !id) { return box; }
    function form(cls, action) {
      var f = el("form", cls);
      f.method = "post";
      f.action = "/activities/" + encodeURIComponent(id) + action;
      [["csrf", csrf], ["back", "/"]].forEach(function (kv) {
        var i = el("input");
        i.type = "hidden"; i.name = kv[0]; i.value = kv[1];
        f.appendChild(i);
      });
      return f;
    }
    var like = form("like", "/like");
    var on = el("input");
    on.type = "hidden"; on.name = "on"; on.value = "true";
    like.appendChild(on);
    var lb = el("button", "like", "Like");
    lb.type = "submit";
    lb.setAttribute("aria-pressed", "false");
    like.appendChild(lb);
    box.appendChild(like);
    var comment = form("comment", "/comments");
    var label = el("label", "visually-hidden", "Write a comment");
    label.htmlFor = "comment-" + id;
    comment.appendChild(label);
    var input = el("input");
    input.id = "comment-" + id; input.name = "text"; input.type = "text"; input.maxLength = 5000; input.required = true;
    input.placeholder = "Write a comment…"; input.autocomplete = "off";
    comment.appendChild(input);
    var cb = el("button", "secondary", "Comment");
    cb.type = "submit";
    comment.appendChild(cb);
    box.appendChild(comment);
    return box;
  }

  // Live home feed: server-sent events from the Watch stream. The browser
  // resumes by itself with Last-Event-ID; the first connection resumes from
  // the newest item the page was rendered with, so nothing that landed in
  // between is missed. Items already shown are dropped (at least once).
  function liveFeed() {
    var box = document.getElementById("home-feed");
    if (!box || typeof EventSource === "undefined") { return; }
    var list = box.querySelector("ol.feed");
    var status = document.getElementById("live-status");
    var url = box.dataset.watch;
    if (box.dataset.newest) { url += "?last_event_id=" + encodeURIComponent(box.dataset.newest); }
    var es = new EventSource(url);
    es.onopen = function () { box.dataset.live = "open"; };
    es.onmessage = function (e) {
      var msg = JSON.parse(e.data);
      var item = msg.item;
      if (!item || !item.activity || list.querySelector('li[data-id="' + CSS.escape(item.activity.id) + '"]')) { return; }
      var empty = box.querySelector(".empty");
      if (empty) { empty.remove(); }
      // Newest first; scroll anchoring keeps what the reader looks at in place.
      var node = renderItem(item);
      var before = null;
      Array.prototype.some.call(list.children, function (c) {
        if (c.dataset.id < item.activity.id) { before = c; return true; }
        return false;
      });
      list.insertBefore(node, before);
      var who = item.actorProfile ? item.actorProfile.displayName : item.activity.actor.id;
      status.textContent = "New post from " + who;
    };
    es.addEventListener("error", function (e) {
      if (e.data) {
        var st = JSON.parse(e.data);
        if (st.code === 16 || st.code === 7) { es.close(); box.dataset.live = "closed"; status.textContent = "Live updates stopped: sign in again."; }
      }
    });
  }

  // The composer posts through the JSON API; the post comes back through the
  // live feed like everyone else's.
  function composer() {
    var form = document.getElementById("composer");
    if (!form) { return; }
    var status = document.getElementById("compose-status");
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var text = form.elements.text.value.trim();
      if (!text) { return; }
      var req = { actorUserId: me, text: text, idempotencyKey: "web-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 10) };
      var url = form.elements.link_url.value.trim();
      if (url) { req.links = [{ url: url, title: form.elements.link_title.value.trim() }]; }
      var rec = form.elements.record.value;
      if (rec) { var i = rec.indexOf("/"); req.record = { type: rec.slice(0, i), externalId: rec.slice(i + 1) }; }
      var button = form.querySelector("button[type=submit]");
      button.disabled = true;
      status.textContent = "Posting…";
      api("POST", "/v1/activities", req).then(function () {
        form.reset();
        status.textContent = "Posted.";
      }).catch(function (err) {
        status.textContent = "Not posted: " + err.message;
      }).finally(function () { button.disabled = false; });
    });
  }

  // @mention suggestions from ProfileService.ListProfiles, as a listbox
  // driven from the keyboard (up, down, enter, tab, escape).
  function mentions() {
    var ta = document.getElementById("compose-text");
    var box = document.getElementById("mention-list");
    if (!ta || !box) { return; }
    var people = null, shown = [], active = -1, start = -1;
    function load() {
      if (people) { return Promise.resolve(people); }
      return api("GET", "/v1/profiles?pageSize=200").then(function (r) { people = r.profiles || []; return people; });
    }
    function close() { box.hidden = true; ta.removeAttribute("aria-activedescendant"); active = -1; shown = []; }
    function highlight(i) {
      active = i;
      Array.prototype.forEach.call(box.children, function (li, j) { li.setAttribute("aria-selected", j === i ? "true" : "false"); });
      if (i >= 0) { ta.setAttribute("aria-activedescendant", box.children[i].id); }
    }
    function pick(i) {
      var p = shown[i];
      var v = ta.value, caret = ta.selectionStart;
      ta.value = v.slice(0, start) + "@" + p.userId + " " + v.slice(caret);
      var pos = start + p.userId.length + 2;
      ta.setSelectionRange(pos, pos);
      close();
      ta.focus();
    }
    ta.addEventListener("input", function () {
      var upto = ta.value.slice(0, ta.selectionStart);
      var m = /(^|\s)@([A-Za-z0-9._@-]{0,64})$/.exec(upto);
      if (!m) { close(); return; }
      start = upto.length - m[2].length - 1;
      var q = m[2].toLowerCase();
      load().then(function (list) {
        shown = list.filter(function (p) {
          return p.userId.toLowerCase().indexOf(q) === 0 || (p.displayName || "").toLowerCase().split(/\s+/).some(function (w) { return w.indexOf(q) === 0; });
        }).slice(0, 8);
        box.textContent = "";
        shown.forEach(function (p, i) {
          var li = el("li", null, p.displayName || p.userId);
          li.id = "mention-" + i;
          li.setAttribute("role", "option");
          li.dataset.user = p.userId;
          li.appendChild(el("span", "sub", "@" + p.userId));
          li.addEventListener("mousedown", function (ev) { ev.preventDefault(); pick(i); });
          box.appendChild(li);
        });
        if (shown.length) { box.hidden = false; highlight(0); } else { close(); }
      });
    });
    ta.addEventListener("keydown", function (e) {
      if (box.hidden) { return; }
      if (e.key === "ArrowDown") { e.preventDefault(); highlight((active + 1) % shown.length); }
      else if (e.key === "ArrowUp") { e.preventDefault(); highlight((active - 1 + shown.length) % shown.length); }
      else if (e.key === "Enter" || e.key === "Tab") { if (active >= 0) { e.preventDefault(); pick(active); } }
      else if (e.key === "Escape") { e.preventDefault(); close(); }
    });
    ta.addEventListener("blur", function () { setTimeout(close, 0); });
  }

  // Follow buttons call the JSON API and update in place.
  function followButtons() {
    Array.prototype.forEach.call(document.querySelectorAll("form.follow"), function (form) {
      form.addEventListener("submit", function (e) {
        e.preventDefault();
        var ent = form.dataset.entity, follow = form.elements.follow.value === "true";
        var button = form.querySelector("button");
        var body, del;
        if (ent.indexOf("user:") === 0) {
          var id = ent.slice(5);
          body = { userId: id };
          del = "/v1/users/" + encodeURIComponent(me) + "/following/users/" + encodeURIComponent(id);
        } else {
          var rest = ent.slice(7), i = rest.indexOf("/");
          var ref = { type: rest.slice(0, i), externalId: rest.slice(i + 1) };
          body = { record: ref };
          del = "/v1/users/" + encodeURIComponent(me) + "/following/records/" + encodeURIComponent(ref.type) + "/" + encodeURIComponent(ref.externalId);
        }
        button.disabled = true;
        var call = follow ? api("POST", "/v1/users/" + encodeURIComponent(me) + "/following", body) : api("DELETE", del);
        call.then(function (r) {
          form.elements.follow.value = follow ? "false" : "true";
          button.textContent = follow ? "Following" : "Follow";
          button.className = follow ? "secondary" : "primary";
          button.setAttribute("aria-pressed", follow ? "true" : "false");
          var count = document.querySelector('[data-count="followers"]');
          if (count && r.changed) { count.textContent = String(Number(count.textContent) + (follow ? 1 : -1)); }
        }).catch(function (err) {
          button.textContent = "Try again";
          button.title = err.message;
        }).finally(function () { button.disabled = false; });
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    liveFeed();
    composer();
    mentions();
    followButtons();
  });
})();
