// Dashboard: one card per topic with a sentiment line over volume bars, alert bands and headlines, and the
// AI-bubble index (the share of stories that are bubble talk). Headline lists show stories - one event,
// however many copies - with how many sources carried each, instead of the same wire story five times.
// No dependencies. Every piece of data reaches the page through textContent or setAttribute, never
// innerHTML, so headlines (including ones that look like markup) are always shown as text. Text loses its
// bidi controls (`shown`), and each headline and score is its own bidi isolate (dir attributes), so neither a
// right-to-left title nor a stray override can draw "+0.01" as "10.0+".
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const RANGE_BUCKET = { "24h": "1h", "3d": "1h", "7d": "3h", "30d": "12h", "90d": "1d" };
  // The index is a share of stories: coarser buckets, so each holds enough stories to mean something.
  const INDEX_BUCKET = { "24h": "3h", "3d": "6h", "7d": "1d", "30d": "1d", "90d": "1d" };
  const BUBBLE_TOPIC = "ai_bubble";
  const W = 640, H = 240, M = { top: 12, right: 44, bottom: 26, left: 40 };
  const state = { token: sessionStorage.getItem("monitor-token") || "", topics: [], tz: "UTC" };

  try {
    state.tz = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  } catch (e) { state.tz = "UTC"; }

  const $ = (id) => document.getElementById(id);

  // Bidi embedding, override and isolate controls: the ranges of monitor/textsafe.py.
  const BIDI_CONTROLS = /[\u202A-\u202E\u2066-\u2069]/g;
  const shown = (text) => String(text).replace(BIDI_CONTROLS, "");

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined && text !== null) node.textContent = shown(text);
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined && text !== null) node.textContent = shown(text);
    return node;
  }

  class AuthError extends Error {}

  async function api(path, params) {
    const url = new URL(path, window.location.origin);
    for (const [k, v] of Object.entries(params || {})) {
      if (Array.isArray(v)) v.forEach((item) => url.searchParams.append(k, item));
      else if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
    }
    const headers = { Accept: "application/json" };
    if (state.token) headers.Authorization = "Bearer " + state.token;
    const response = await fetch(url, { headers });
    if (response.status === 401) throw new AuthError("token required");
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.error || body.detail || ("HTTP " + response.status));
    return body;
  }

  function setStatus(text, isError) {
    const node = $("status");
    node.textContent = shown(text || "");
    node.className = isError ? "error" : "";
  }

  function fmtTime(iso, withDate) {
    const d = new Date(iso);
    const opts = withDate
      ? { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", timeZone: state.tz }
      : { hour: "2-digit", minute: "2-digit", timeZone: state.tz };
    try { return d.toLocaleString(undefined, opts); } catch (e) { return iso; }
  }

  const localParts = (t) => {
    const parts = {};
    try {
      new Intl.DateTimeFormat("en-GB", {
        timeZone: state.tz, hourCycle: "h23", year: "numeric", month: "short", day: "numeric", hour: "2-digit",
        minute: "2-digit",
      }).formatToParts(new Date(t)).forEach((p) => { parts[p.type] = p.value; });
    } catch (e) { /* keep empty */ }
    return parts;
  };

  // Ticks on bucket starts at round local times: midnights for multi-day ranges, every 6 hours otherwise,
  // thinned to at most 7 labels.
  function timeTicks(starts, span) {
    const multiDay = span > 36 * 3600e3;
    let picked = starts.map((t) => ({ t, p: localParts(t) })).filter(({ p }) =>
      multiDay ? p.hour === "00" && p.minute === "00" : p.minute === "00" && Number(p.hour) % 6 === 0);
    const every = Math.max(1, Math.ceil(picked.length / 7));
    picked = picked.filter((_, i) => i % every === 0);
    return picked.map(({ t, p }) => ({ t, label: multiDay ? `${p.day} ${p.month}` : `${p.hour}:${p.minute}` }));
  }

  function fmtScore(v) {
    return v === null || v === undefined ? "–" : (v > 0 ? "+" : "") + v.toFixed(2);
  }

  function safeHref(url) {
    // Only http(s) links: a feed cannot smuggle a javascript: URL into the page.
    try {
      const u = new URL(url);
      return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
    } catch (e) { return null; }
  }

  // ------------------------------------------------------------------ chart

  function drawChart(topic, points, episodes, since, until) {
    const root = svg("svg", {
      class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "data-topic": topic,
      "aria-label": `Sentiment and volume for ${topic}`,
    });
    const iw = W - M.left - M.right, ih = H - M.top - M.bottom;
    const t0 = Date.parse(since), t1 = Date.parse(until);
    const starts = points.map((p) => Date.parse(p.bucket_start));
    const step = starts.length > 1 ? starts[1] - starts[0] : (t1 - t0);
    const tMin = starts.length ? Math.min(starts[0], t0) : t0;
    const tMax = Math.max(t1, starts.length ? starts[starts.length - 1] + step : t1);
    const x = (t) => M.left + ((t - tMin) / Math.max(1, tMax - tMin)) * iw;
    const y = (s) => M.top + ((1 - s) / 2) * ih; // sentiment -1..1
    const maxVol = Math.max(1, ...points.map((p) => p.articles));
    const yv = (n) => M.top + ih - (n / maxVol) * ih * 0.9;

    // grid and axes
    for (const s of [-1, -0.5, 0, 0.5, 1]) {
      root.appendChild(svg("line", { class: s === 0 ? "zero" : "grid", x1: M.left, x2: M.left + iw, y1: y(s), y2: y(s) }));
      root.appendChild(svg("text", { class: "axis", x: M.left - 6, y: y(s) + 4, "text-anchor": "end" }, fmtScore(s)));
    }
    root.appendChild(svg("text", { class: "axis", x: M.left + iw + 6, y: M.top + 10 }, String(maxVol)));
    root.appendChild(svg("text", { class: "axis", x: M.left + iw + 6, y: M.top + ih }, "0"));
    for (const tick of timeTicks(starts, t1 - t0)) {
      const tx = x(tick.t);
      if (tx < M.left || tx > M.left + iw) continue;
      root.appendChild(svg("line", { class: "grid", x1: tx, x2: tx, y1: M.top + ih, y2: M.top + ih + 4 }));
      root.appendChild(svg("text", { class: "axis tick", x: tx, y: H - 8, "text-anchor": "middle" }, tick.label));
    }

    // alert bands: from firing to resolution (or the end of the range); pending-only episodes get none
    const alertsGroup = svg("g", { class: "alerts" });
    for (const e of episodes) {
      if (!e.fired_at) continue;
      const start = Date.parse(e.fired_at);
      const end = e.resolved_at ? Date.parse(e.resolved_at) : tMax;
      if (end < tMin || start > tMax) continue;
      const g = svg("g", {
        class: "alert", "data-rule": e.rule, "data-state": e.state, "data-fired-at": e.fired_at || "",
        "data-resolved-at": e.resolved_at || "",
      });
      const xs = x(Math.max(start, tMin)), xe = x(Math.min(end, tMax));
      g.appendChild(svg("rect", { class: "alert-band", x: xs, y: M.top, width: Math.max(2, xe - xs), height: ih }));
      g.appendChild(svg("line", { class: "alert-start", x1: xs, x2: xs, y1: M.top, y2: M.top + ih }));
      if (e.resolved_at) g.appendChild(svg("line", { class: "alert-end", x1: xe, x2: xe, y1: M.top, y2: M.top + ih }));
      g.appendChild(svg("title", {}, `${e.rule}: ${e.state}` + (e.value !== null ? ` (value ${fmtScore(e.value)}, threshold ${fmtScore(e.threshold)})` : "")));
      alertsGroup.appendChild(g);
    }
    root.appendChild(alertsGroup);

    // volume bars
    const bars = svg("g", { class: "bars" });
    const bw = Math.max(1, (x(tMin + step) - x(tMin)) * 0.8);
    points.forEach((p, i) => {
      const top = yv(p.articles);
      const bar = svg("rect", {
        class: "bar", x: x(starts[i]) + bw * 0.125, y: top, width: bw, height: M.top + ih - top,
        "data-bucket-start": p.bucket_start, "data-articles": p.articles,
      });
      bar.appendChild(svg("title", {}, `${fmtTime(p.bucket_start, true)}: ${p.articles} articles`));
      bars.appendChild(bar);
    });
    root.appendChild(bars);

    // sentiment line (broken at empty buckets) and points
    const segments = [];
    let current = [];
    points.forEach((p, i) => {
      if (p.mean_sentiment === null) { if (current.length) segments.push(current); current = []; return; }
      current.push([x(starts[i] + step / 2), y(p.mean_sentiment)]);
    });
    if (current.length) segments.push(current);
    for (const seg of segments) {
      if (seg.length < 2) continue;
      root.appendChild(svg("path", {
        class: "line", d: seg.map(([px, py], i) => (i ? "L" : "M") + px.toFixed(1) + "," + py.toFixed(1)).join(" "),
      }));
    }
    const dots = svg("g", { class: "points" });
    points.forEach((p, i) => {
      if (p.mean_sentiment === null) return;
      const cls = p.mean_sentiment <= -0.2 ? "point neg" : p.mean_sentiment >= 0.2 ? "point pos" : "point";
      const dot = svg("circle", {
        class: cls, cx: x(starts[i] + step / 2).toFixed(1), cy: y(p.mean_sentiment).toFixed(1), r: 3.5,
        "data-topic": topic, "data-bucket-start": p.bucket_start, "data-articles": p.articles,
        "data-mean": p.mean_sentiment, "data-negative-share": p.negative_share, "data-positive-share": p.positive_share,
      });
      dot.appendChild(svg("title", {}, `${fmtTime(p.bucket_start, true)}: mean ${fmtScore(p.mean_sentiment)}, ` +
        `${p.articles} articles, ${Math.round(p.negative_share * 100)}% negative, ${Math.round(p.positive_share * 100)}% positive`));
      dots.appendChild(dot);
    });
    root.appendChild(dots);
    return root;
  }

  // ------------------------------------------------------------------ cards

  // One list item: the headline (a link only for http(s)), its score, then a line of details. The score
  // comes right after the headline: both are bidi isolates, so neither can reorder the other.
  function headlineItem(attrs, title, url, score, details) {
    const li = el("li", attrs);
    const href = safeHref(url);
    const text = title || "(untitled)";
    // dir="auto": a title takes its own direction, inside an isolate that cannot move the score after it
    if (href) li.appendChild(el("a", { href, target: "_blank", rel: "noopener noreferrer", dir: "auto" }, text));
    else li.appendChild(el("span", { dir: "auto" }, text));
    li.appendChild(el("span", { class: "score " + (score < 0 ? "neg" : "pos"), dir: "ltr" }, fmtScore(score)));
    if (details.length) li.appendChild(el("div", { class: "score meta" }, details.join(" · ")));
    return li;
  }

  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

  function headlineList(title, items, cls, kind, empty) {
    const box = el("div", { class: cls, "data-kind": kind });
    box.appendChild(el("h3", {}, title));
    if (!items.length) { box.appendChild(el("p", { class: "empty" }, empty || `No ${kind} in this range.`)); return box; }
    const list = el("ol");
    for (const item of items) list.appendChild(kind === "stories" ? storyItem(item) : articleItem(item));
    box.appendChild(list);
    return box;
  }

  function storyItem(story) {
    const details = [
      plural(story.sources, "source") + (story.articles > story.sources ? ` (${plural(story.articles, "article")})` : ""),
      story.languages.length > 1 ? story.languages.join(" + ") : null,
      fmtTime(story.first_seen, true),
    ].filter(Boolean);
    const li = headlineItem(
      { "data-story-id": story.id, "data-sources": story.sources, "data-articles": story.articles },
      story.headline, story.url, story.sentiment, details);
    const names = (story.source_names || []).join(", ");
    if (names) li.setAttribute("title", shown(names));
    return li;
  }

  function articleItem(a) {
    const s = a.topic_sentiment !== undefined && a.topic_sentiment !== null ? a.topic_sentiment : a.score;
    const details = [a.source || a.feed, a.happened_at ? fmtTime(a.happened_at, true) : null].filter(Boolean);
    return headlineItem({ "data-article-id": a.id }, a.title, a.url, s, details);
  }

  // The topic's most negative and most positive stories. Stories come sorted by their vote toward the topic
  // and only the right sign is kept: the top five of "most negative" hold every negative one there is when
  // fewer than five are. With no stories at all (stories disabled, or history from before they existed and
  // not rebuilt yet), the articles themselves, as before.
  async function topicHeadlines(topic, range) {
    const ask = (sort) => api("/api/stories", { topic, since: range, sort, limit: 5 });
    const [negative, positive, covered] = await Promise.all([ask("most_negative"), ask("most_positive"), ask("sources")]);
    if (negative.items.length || positive.items.length) {
      const withVote = (items) => items.map((story) => {
        const vote = story.topics.find((t) => t.topic === topic);
        return { ...story, sentiment: vote ? vote.sentiment : null };
      });
      return {
        kind: "stories",
        negatives: withVote(negative.items).filter((s) => s.sentiment !== null && s.sentiment < 0),
        positives: withVote(positive.items).filter((s) => s.sentiment !== null && s.sentiment > 0),
        // Only stories more than one source carried: the point of the list is the copy storms.
        covered: withVote(covered.items).filter((s) => s.sources > 1),
      };
    }
    const [negatives, positives] = await Promise.all([
      api("/api/articles", { topic, since: range, sort: "most_negative", max_score: -0.0001, limit: 5 }),
      api("/api/articles", { topic, since: range, sort: "most_positive", min_score: 0.0001, limit: 5 }),
    ]);
    return { kind: "articles", negatives: negatives.items, positives: positives.items };
  }

  async function renderTopic(container, topic, range, bucket) {
    const card = el("section", { class: "card", "data-topic": topic.name });
    card.appendChild(el("h2", {}, topic.name));
    const summary = el("p", { class: "summary" }, topic.description || "");
    card.appendChild(summary);
    container.appendChild(card);
    const [history, headlines, alerts] = await Promise.all([
      api("/api/sentiment", { topic: topic.name, since: range, bucket, tz: state.tz }),
      topicHeadlines(topic.name, range),
      api("/api/alerts", { topic: topic.name, since: range, limit: 200 }),
    ]);
    const total = history.points.reduce((n, p) => n + p.articles, 0);
    const weighted = history.points.reduce((s, p) => s + (p.mean_sentiment === null ? 0 : p.mean_sentiment * p.articles), 0);
    summary.textContent = shown(`${total} articles · mean sentiment ${total ? fmtScore(weighted / total) : "–"}` +
      (topic.description ? " · " + topic.description : ""));
    card.appendChild(drawChart(topic.name, history.points, alerts.items, history.since, history.until));
    if (alerts.items.length) {
      const list = el("ul", { class: "alerts-list" });
      for (const e of alerts.items) {
        const since = fmtTime(e.fired_at || e.started_at, true);
        const text = e.resolved_at
          ? `${e.rule}: fired ${since}, resolved ${fmtTime(e.resolved_at, true)}`
          : `${e.rule}: ${e.state} since ${since}`;
        list.appendChild(el("li", { class: "alert-item", "data-state": e.state }, "⚠ " + text));
      }
      card.appendChild(list);
    }
    const lists = el("div", { class: "headlines" });
    lists.appendChild(headlineList("Most negative", headlines.negatives, "negative", headlines.kind));
    lists.appendChild(headlineList("Most positive", headlines.positives, "positive", headlines.kind));
    if (headlines.covered) {
      lists.appendChild(headlineList("Most covered", headlines.covered, "covered", headlines.kind,
        "No story in this range was carried by more than one source."));
    }
    card.appendChild(lists);
  }

  // ------------------------------------------------------------------ AI-bubble index

  // The share of AI-chip stories that are bubble talk, per bucket and over the range: each story counts
  // once, however many sites copied it (`/api/history?topic=ai_bubble&count=stories`, `coverage_share`).
  async function renderBubbleIndex(container, range) {
    const bucket = INDEX_BUCKET[range] || "1d";
    const card = el("section", { class: "card index-card", id: "bubble-index" });
    card.appendChild(el("h2", {}, "AI-bubble index"));
    const summary = el("p", { class: "summary" }, "");
    card.appendChild(summary);
    container.appendChild(card);
    const history = await api("/api/history", { topic: BUBBLE_TOPIC, count: "stories", since: range, bucket, tz: state.tz });
    const bubble = history.points.reduce((n, p) => n + p.stories, 0);
    const all = history.points.reduce((n, p) => n + p.all_stories, 0);
    const value = all ? bubble / all : null;
    const shownValue = el("strong", { id: "bubble-index-value", "data-value": value === null ? "" : value },
      value === null ? "–" : `${Math.round(value * 100)}%`);
    summary.replaceChildren(shownValue, document.createTextNode(shown(value === null
      ? " no stories in this range"
      : ` of AI-chip coverage is bubble talk: ${bubble} of ${all} stories in this range, each counted once`)));
    card.appendChild(drawIndex(history.points, history.since, history.until));
  }

  function drawIndex(points, since, until) {
    const w = W, h = 90, m = { top: 8, right: 44, bottom: 18, left: 40 };
    const root = svg("svg", { class: "index", viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": "AI-bubble index per bucket" });
    const iw = w - m.left - m.right, ih = h - m.top - m.bottom;
    const t0 = Date.parse(since), t1 = Date.parse(until);
    const starts = points.map((p) => Date.parse(p.bucket_start));
    const step = starts.length > 1 ? starts[1] - starts[0] : (t1 - t0);
    const tMin = starts.length ? Math.min(starts[0], t0) : t0;
    const tMax = Math.max(t1, starts.length ? starts[starts.length - 1] + step : t1);
    const x = (t) => m.left + ((t - tMin) / Math.max(1, tMax - tMin)) * iw;
    const top = Math.max(0.1, ...points.map((p) => p.coverage_share || 0));
    const y = (share) => m.top + ih - (share / top) * ih;
    root.appendChild(svg("line", { class: "grid", x1: m.left, x2: m.left + iw, y1: m.top + ih, y2: m.top + ih }));
    root.appendChild(svg("text", { class: "axis", x: m.left - 6, y: m.top + 8, "text-anchor": "end" }, `${Math.round(top * 100)}%`));
    root.appendChild(svg("text", { class: "axis", x: m.left - 6, y: m.top + ih, "text-anchor": "end" }, "0%"));
    for (const tick of timeTicks(starts, t1 - t0)) {
      const tx = x(tick.t);
      if (tx < m.left || tx > m.left + iw) continue;
      root.appendChild(svg("text", { class: "axis tick", x: tx, y: h - 4, "text-anchor": "middle" }, tick.label));
    }
    const bw = Math.max(1, (x(tMin + step) - x(tMin)) * 0.8);
    points.forEach((p, i) => {
      const share = p.coverage_share === null ? 0 : p.coverage_share;
      const bar = svg("rect", {
        class: "index-bar", x: x(starts[i]) + bw * 0.125, y: y(share), width: bw, height: m.top + ih - y(share),
        "data-bucket-start": p.bucket_start, "data-coverage-share": p.coverage_share === null ? "" : p.coverage_share,
        "data-stories": p.stories, "data-all-stories": p.all_stories,
      });
      bar.appendChild(svg("title", {}, `${fmtTime(p.bucket_start, true)}: ` + (p.coverage_share === null
        ? "no stories" : `${Math.round(share * 100)}% (${p.stories} of ${p.all_stories} stories)`)));
      root.appendChild(bar);
    });
    return root;
  }

  // ------------------------------------------------------------------ silences

  // Active silences (`monitor silence list`): what is matched, until when, why and by whom. Hidden when none.
  async function renderSilences() {
    const body = await api("/api/silences");
    const active = body.items.filter((s) => s.state === "active");
    const list = $("silence-list");
    list.replaceChildren();
    for (const s of active) {
      const matchers = [["rule", s.rule], ["topic", s.topic], ["severity", s.severity]]
        .filter(([, v]) => v).map(([k, v]) => `${k}=${v}`).join(", ");
      const text = `#${s.id} ${matchers} until ${fmtTime(s.ends_at, true)}: ${s.reason}` +
        (s.created_by ? ` (${s.created_by})` : "");
      list.appendChild(el("li", { class: "silence-item", "data-silence-id": s.id }, text));
    }
    $("silences").hidden = active.length === 0;
  }

  async function load() {
    const range = $("range").value;
    const bucket = RANGE_BUCKET[range] || "1h";
    const container = $("charts");
    setStatus("Loading…");
    try {
      if (!state.topics.length) {
        state.topics = await api("/api/topics");
        for (const t of state.topics) $("topic").appendChild(el("option", { value: t.name }, t.name));
        const wanted = new URLSearchParams(window.location.search).get("topic");
        if (wanted && state.topics.some((t) => t.name === wanted)) $("topic").value = wanted;
      }
      const selected = state.topics.filter((t) => !$("topic").value || t.name === $("topic").value);
      container.replaceChildren();
      container.classList.toggle("single", selected.length === 1);
      await renderSilences();
      if (state.topics.some((t) => t.name === BUBBLE_TOPIC)) await renderBubbleIndex(container, range);
      for (const topic of selected) await renderTopic(container, topic, range, bucket);
      $("auth").hidden = true;
      setStatus("");
      document.body.setAttribute("data-loaded", "true");
    } catch (err) {
      if (err instanceof AuthError) {
        $("auth").hidden = false;
        setStatus(state.token ? "The token was rejected." : "Enter the API token to load the data.", true);
      } else {
        setStatus("Could not load data: " + err.message, true);
      }
      document.body.setAttribute("data-loaded", "error");
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("tzname").textContent = state.tz;
    const params = new URLSearchParams(window.location.search);
    if (params.get("range") && RANGE_BUCKET[params.get("range")]) $("range").value = params.get("range");
    $("controls").addEventListener("submit", (e) => { e.preventDefault(); load(); });
    $("topic").addEventListener("change", load);
    $("range").addEventListener("change", load);
    $("auth-form").addEventListener("submit", (e) => {
      e.preventDefault();
      state.token = $("token").value.trim();
      sessionStorage.setItem("monitor-token", state.token);
      load();
    });
    load();
  });
})();
