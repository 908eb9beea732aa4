// personid operator page: five hash-routed views over the v1 API (docs/api.md). No dependencies, no build.
//
// Every request goes through `api()`: it adds X-API-Key when one is set (kept in sessionStorage, so it lives as
// long as the tab) and turns every error answer (RFC 9457 problem+json) into an ApiError that `problemNotice()`
// shows as title + detail + the offending fields. Thumbnails are fetched the same way and shown through object
// URLs, because an <img src> cannot send the key when reads are protected. Nothing is ever written as HTML:
// every text from the service goes through textContent.

const KEY_STORAGE = "personid.apiKey";
const VIEWS = ["analyse", "search", "enroll", "gallery", "status"];
const TITLES = { analyse: "Analyse", search: "Search", enroll: "Enroll", gallery: "Gallery", status: "Status" };
const IDENTITY_ID = /^[A-Za-z0-9_.-]{1,64}$/;
const PLACEHOLDER = new URL("placeholder.svg", import.meta.url).href;
const DESCRIPTION_PAGE = 20;

// ---------------------------------------------------------------- small helpers

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

/** Build an element: h("a", {href, class: "x"}, "text", child, [children]). Strings become text nodes. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value == null || value === false) continue;
    if (name === "class") el.className = value;
    else if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

const humanize = (name) => {
  const text = String(name).replace(/[_-]+/g, " ").trim();
  return text.charAt(0).toUpperCase() + text.slice(1);
};
const pct = (p) => `${Math.round(Math.max(0, Math.min(1, Number(p) || 0)) * 100)}%`;
const plural = (n, word, many = `${word}s`) => `${n} ${n === 1 ? word : many}`;
const enc = encodeURIComponent;

function bar(fraction) {
  const fill = h("span");
  fill.style.width = `${Math.max(0, Math.min(1, Number(fraction) || 0)) * 100}%`;
  return h("span", { class: "bar", "aria-hidden": "true" }, fill);
}

function formatDate(value) {
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? String(value ?? "") : date.toLocaleString();
}

let toastTimer = 0;
function toast(message) {
  const box = $("#toast");
  box.textContent = message;
  box.classList.add("show");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => box.classList.remove("show"), 5000);
}

/** Disable `button` (with a spinner and `label`) while `work` runs. */
async function withBusy(button, label, work) {
  const before = button.textContent;
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  if (label) button.textContent = label;
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
    button.textContent = before;
  }
}

// ---------------------------------------------------------------- API key

const memoryStore = new Map(); // when sessionStorage is unavailable (privacy settings)
function readKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) ?? "";
  } catch {
    return memoryStore.get(KEY_STORAGE) ?? "";
  }
}
function writeKey(value) {
  try {
    if (value) sessionStorage.setItem(KEY_STORAGE, value);
    else sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    if (value) memoryStore.set(KEY_STORAGE, value);
    else memoryStore.delete(KEY_STORAGE);
  }
}

function showKeyState() {
  const state = $("#api-key-state");
  const set = Boolean(readKey());
  state.textContent = set ? "Key set" : "No key";
  state.classList.toggle("set", set);
}

function useKey(value) {
  const key = value.trim();
  const input = $("#api-key");
  if (/[^\x21-\x7e]/.test(key)) {
    // a header value must be visible ASCII; fetch would refuse it with an obscure error
    input.setAttribute("aria-invalid", "true");
    $("#api-key-state").textContent = "Invalid characters";
    return;
  }
  input.removeAttribute("aria-invalid");
  writeKey(key);
  showKeyState();
  resetThumbnails();
  resetModel();
  loadModel().catch(() => null); // orders attribute lists; errors show where the model is needed
  route({ focus: false, reload: true });
}

// ---------------------------------------------------------------- the API

class ApiError extends Error {
  constructor({ status = 0, title = "Error", detail = "", errors = [], type = "", checks = null }) {
    super(detail || title);
    Object.assign(this, { status, title, detail, errors, type, checks });
  }
}

async function errorFrom(response) {
  let body = null;
  try {
    const type = response.headers.get("content-type") ?? "";
    body = type.includes("json") ? await response.json() : { detail: (await response.text()).slice(0, 300) };
  } catch {
    body = null;
  }
  return new ApiError({
    status: response.status,
    title: (body && typeof body.title === "string" && body.title) || response.statusText || `HTTP ${response.status}`,
    detail: body && typeof body.detail === "string" ? body.detail : "",
    errors: body && Array.isArray(body.errors) ? body.errors : [],
    type: body && typeof body.type === "string" ? body.type : "",
    checks: body && body.checks && typeof body.checks === "object" ? body.checks : null,
  });
}

/** Call the service (paths are relative, so the page also works behind a reverse-proxy prefix). */
async function api(path, { method = "GET", query = null, form = null, as = "json" } = {}) {
  const url = new URL(path, document.baseURI);
  for (const [name, value] of Object.entries(query ?? {})) {
    if (value != null && value !== "") url.searchParams.set(name, String(value));
  }
  const headers = new Headers({ Accept: as === "blob" ? "image/*, application/problem+json" : "application/json, application/problem+json" });
  const key = readKey();
  if (key) headers.set("X-API-Key", key);
  let response;
  try {
    response = await fetch(url, { method, headers, body: form, cache: "no-store" });
  } catch (error) {
    throw new ApiError({ title: "Cannot reach the service", detail: `${method} ${url.pathname}: ${error.message}` });
  }
  if (!response.ok) throw await errorFrom(response);
  if (response.status === 204) return null;
  return as === "blob" ? response.blob() : response.json();
}

/** A readable error: title (status), detail, the fields at fault, and what to do for 401. */
function problemNotice(error, context = "") {
  const problem = error instanceof ApiError ? error : new ApiError({ title: "The page failed", detail: String(error?.message ?? error) });
  const box = h("div", { class: "notice error", role: "alert", "data-status": problem.status || null });
  const status = problem.status ? ` (${problem.status})` : "";
  box.append(h("p", { class: "problem-title" }, context ? `${context}: ` : "", problem.title, status));
  const fields = problem.errors.filter((item) => item && typeof item === "object");
  const joined = fields.map((item) => `${item.field}: ${item.message}`).join("; ");
  if (problem.detail && problem.detail !== joined) box.append(h("p", { class: "problem-detail" }, problem.detail));
  if (fields.length) {
    box.append(h("ul", { class: "problem-fields" },
      fields.map((item) => h("li", {}, h("code", {}, item.field || "request"), ": ", String(item.message ?? "")))));
  }
  if (problem.checks) {
    box.append(h("ul", {}, Object.entries(problem.checks).map(([name, value]) => h("li", {}, h("strong", {}, name), ": ", String(value)))));
  }
  if (problem.status === 401) {
    box.append(h("p", {}, readKey() ? "Check the API key at the top of the page." : "Enter an API key at the top of the page."));
  }
  return box;
}

function showNotice(slot, node) {
  slot.replaceChildren(node);
}
function infoNotice(text, kind = "info") {
  return h("div", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, h("p", {}, text));
}

// ---------------------------------------------------------------- the model (heads, labels, groups)

let modelPromise = null;
function loadModel() {
  modelPromise ??= api("v1/model").then(noteHeads, (error) => {
    modelPromise = null;
    throw error;
  });
  return modelPromise;
}
function resetModel() {
  modelPromise = null;
}

function headsOf(model) {
  return model?.manifest?.outputs?.attributes?.heads ?? [];
}

/** [[group, [head, ...]], ...] in the manifest's group order; heads no group names go under "other". */
function groupedHeads(model) {
  const heads = headsOf(model);
  const byName = new Map(heads.map((head) => [head.name, head]));
  const groups = model?.manifest?.groups ?? {};
  const seen = new Set();
  const out = [];
  for (const [group, names] of Object.entries(groups)) {
    const members = (names ?? []).filter((name) => byName.has(name)).map((name) => byName.get(name));
    members.forEach((head) => seen.add(head.name));
    if (members.length) out.push([group, members]);
  }
  const rest = heads.filter((head) => !seen.has(head.name));
  if (rest.length) out.push(["other", rest]);
  return out;
}

let headOrder = new Map(); // head name -> position in the group order, once the model is known

function noteHeads(model) {
  headOrder = new Map(groupedHeads(model).flatMap(([, heads]) => heads).map((head, index) => [head.name, index]));
  return model;
}
function orderedAttributes(attributes) {
  return Object.entries(attributes ?? {}).sort(
    ([a], [b]) => (headOrder.get(a) ?? 1e9) - (headOrder.get(b) ?? 1e9) || a.localeCompare(b));
}

// ---------------------------------------------------------------- thumbnails

const thumbnails = new Map(); // "identity/image" -> Promise<object URL | null>

function resetThumbnails() {
  for (const promise of thumbnails.values()) promise.then((url) => url && URL.revokeObjectURL(url));
  thumbnails.clear();
}

/** An <img> that shows the stored thumbnail (fetched with the key) or a neutral placeholder when there is none. */
function thumbnail(identityId, imageId, alt) {
  const img = h("img", { class: "thumb", src: PLACEHOLDER, alt, width: 64, height: 128, "data-state": "loading" });
  if (!imageId) {
    img.dataset.state = "missing";
    return img;
  }
  const cacheKey = `${identityId}/${imageId}`;
  let promise = thumbnails.get(cacheKey);
  if (!promise) {
    promise = api(`v1/identities/${enc(identityId)}/images/${enc(imageId)}/thumbnail`, { as: "blob" })
      .then((blob) => (blob.type.startsWith("image/") ? URL.createObjectURL(blob) : null))
      .catch((error) => {
        if (error.status !== 404) thumbnails.delete(cacheKey); // 404: none stored; other errors: retry later
        return null;
      });
    thumbnails.set(cacheKey, promise);
  }
  promise.then((url) => {
    if (url) {
      img.addEventListener("load", () => (img.dataset.state = "loaded"), { once: true });
      img.src = url;
    } else {
      img.dataset.state = "missing";
      img.title = "No thumbnail stored";
    }
  });
  return img;
}

// ---------------------------------------------------------------- file picking: drop, paste, choose

const isImage = (file) => file && (file.type.startsWith("image/") || /\.(jpe?g|png|webp|bmp|tiff?|gif|mpo)$/i.test(file.name));

const pasteTargets = {}; // view -> handler(files)

function dropZone(zone, input, onFiles) {
  const hasFiles = (event) => [...(event.dataTransfer?.types ?? [])].includes("Files");
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (event) => {
      if (!hasFiles(event)) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
      zone.classList.add("dragover");
    });
  }
  zone.addEventListener("dragleave", (event) => {
    if (!zone.contains(event.relatedTarget)) zone.classList.remove("dragover");
  });
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragover");
    onFiles([...(event.dataTransfer?.files ?? [])]);
  });
  input.addEventListener("change", () => {
    const files = [...input.files];
    input.value = ""; // choosing the same file again fires `change` again
    onFiles(files);
  });
}

/** Split into images and the names of what is not one (reported, not sent). */
function sortFiles(files) {
  const images = files.filter(isImage);
  const rejected = files.filter((file) => !isImage(file)).map((file) => file.name || "pasted item");
  return { images, rejected };
}

function rejectedNotice(rejected) {
  return infoNotice(`Not an image, left out: ${rejected.join(", ")}.`, "error");
}

// ---------------------------------------------------------------- Analyse

let analyseRun = 0;
let analyseUrl = null;

function cropFigure(url, file, caption) {
  const img = h("img", { src: url, alt: `The crop ${file.name || "pasted"}` });
  const figcaption = h("figcaption", {}, file.name || "pasted image");
  img.addEventListener("load", () => figcaption.append(` · ${img.naturalWidth} × ${img.naturalHeight} px`), { once: true });
  if (caption) figcaption.append(h("br"), caption);
  return h("figure", { class: "crop-figure" }, img, figcaption);
}

function renderHead(name, result, sameAsGroup = false) {
  const labelId = `head-${name}-${Math.random().toString(36).slice(2, 8)}`;
  return h("div", { class: "head", "data-head": name },
    h("div", { class: "head-top" },
      h("span", { class: sameAsGroup ? "head-name sr-only" : "head-name", id: labelId }, humanize(name)),
      h("span", { class: "head-label", "data-label": result.label }, result.label),
      h("span", { class: "pct" }, pct(result.score))),
    h("ul", { class: "scores", "aria-labelledby": labelId },
      Object.entries(result.scores ?? {}).map(([label, p]) =>
        h("li", { class: label === result.label ? "top" : null },
          h("span", { class: "lbl" }, label), bar(p), h("span", { class: "num" }, pct(p))))));
}

function renderGroups(attributes) {
  return h("div", { class: "groups" },
    Object.entries(attributes ?? {}).map(([group, heads]) => {
      const id = `group-${group}`;
      return h("section", { class: "panel group", "aria-labelledby": id, "data-group": group },
        h("h2", { id }, humanize(group)),
        Object.entries(heads ?? {}).map(([name, result]) => renderHead(name, result, name === group)));
    }));
}

async function analyse(files) {
  const slot = $("#analyse-notice");
  const { images, rejected } = sortFiles(files);
  slot.replaceChildren();
  if (rejected.length) showNotice(slot, rejectedNotice(rejected));
  const file = images[0];
  if (!file) return;
  const run = ++analyseRun;
  if (analyseUrl) URL.revokeObjectURL(analyseUrl);
  analyseUrl = URL.createObjectURL(file);
  const result = $("#analyse-result");
  const figure = cropFigure(analyseUrl, file);
  result.replaceChildren(figure, h("p", { class: "muted", role: "status" }, "Analysing…"));
  result.setAttribute("aria-busy", "true");
  const form = new FormData();
  form.append("image", file, file.name || "pasted.png");
  try {
    const body = await api("v1/attributes", { method: "POST", form });
    if (run !== analyseRun) return;
    figure.querySelector("figcaption").append(h("br"), `model ${body.model_id}`);
    result.replaceChildren(figure, renderGroups(body.attributes));
  } catch (error) {
    if (run !== analyseRun) return;
    result.replaceChildren(figure);
    showNotice(slot, problemNotice(error, "Could not analyse the crop"));
  } finally {
    if (run === analyseRun) result.removeAttribute("aria-busy");
  }
}

// ---------------------------------------------------------------- Search

let searchFile = null;
let searchUrl = null;
let filterBuilt = false;
let description = null; // {filter, offset, shown} of the description search being paged

function setSearchFile(files) {
  const slot = $("#search-notice");
  const { images, rejected } = sortFiles(files);
  slot.replaceChildren();
  if (rejected.length) showNotice(slot, rejectedNotice(rejected));
  if (!images.length) return;
  searchFile = images[0];
  if (searchUrl) URL.revokeObjectURL(searchUrl);
  searchUrl = URL.createObjectURL(searchFile);
  const preview = $("#search-preview");
  preview.replaceChildren(
    h("img", { src: searchUrl, alt: `Query crop ${searchFile.name || "pasted"}` }),
    h("div", {}, h("strong", {}, searchFile.name || "pasted image"), h("br"), h("span", { class: "hint" }, "will be searched")));
  preview.hidden = false;
}

async function buildFilter(force = false) {
  if (filterBuilt && !force) return;
  const box = $("#search-filter");
  const keep = currentFilter();
  let model;
  try {
    model = await loadModel();
  } catch (error) {
    box.replaceChildren(problemNotice(error, "Could not load the model's attributes"));
    filterBuilt = false;
    return;
  }
  const control = (head) => {
    const id = `filter-${head.name}`;
    const select = h("select", { id, name: head.name, "data-head": head.name },
      h("option", { value: "" }, "any"), head.labels.map((label) => h("option", { value: label }, label)));
    select.value = head.labels.includes(keep[head.name]) ? keep[head.name] : "";
    const mark = () => select.classList.toggle("active", Boolean(select.value));
    select.addEventListener("change", mark);
    mark();
    return h("div", { class: "filter-head" }, h("label", { for: id }, humanize(head.name)), select);
  };
  // one labelled select per head, in the manifest's group order (age, gender, ..., accessories)
  box.replaceChildren(...groupedHeads(model).flatMap(([, heads]) => heads.map(control)));
  filterBuilt = true;
}

function currentFilter() {
  const filter = {};
  for (const select of $$("#search-filter select")) if (select.value) filter[select.dataset.head] = select.value;
  return filter;
}
const filterText = (filter) => Object.entries(filter).map(([head, label]) => `${head}=${label}`).join(", ");

function attributeChips(attributes) {
  return h("ul", { class: "chips", "aria-label": "Attributes" },
    orderedAttributes(attributes).map(([head, value]) =>
      h("li", { title: `${head}: ${value.label} (${pct(value.score)})` }, h("span", { class: "k" }, `${humanize(head)} `), value.label)));
}

function matchCard(match, rank, scoreName) {
  const name = match.name || match.identity_id;
  const href = `#/gallery/${enc(match.identity_id)}`;
  const scoreId = `score-${rank}-${Math.random().toString(36).slice(2, 8)}`;
  const score = Number(match.score);
  return h("li", { class: rank === 1 ? "card match first" : "card match", "data-identity": match.identity_id },
    thumbnail(match.identity_id, match.image_id, `Stored image of ${name}`),
    h("div", { class: "body" },
      h("p", { class: "rank" }, `#${rank}`),
      h("h3", {}, h("a", { href }, name)),
      match.name ? h("p", { class: "ident" }, match.identity_id) : null,
      h("div", { class: "score-label", id: scoreId }, scoreName),
      h("div", { class: "score", "aria-labelledby": scoreId, role: "group" },
        bar(scoreName === "Similarity" ? Math.max(0, score) : score),
        h("span", { class: "num", "data-score": score }, Number.isFinite(score) ? score.toFixed(3) : "–")),
      attributeChips(match.attributes)));
}

function resultsBlock(heading, summary, cards, emptyText) {
  return [
    h("div", { class: "results-head" }, h("h2", { tabindex: "-1" }, heading), h("p", {}, summary)),
    cards.length ? h("ul", { class: "cards", id: "search-cards" }, cards) : h("p", { class: "empty" }, emptyText),
  ];
}

async function searchByImage(button) {
  const slot = $("#search-notice");
  const results = $("#search-results");
  slot.replaceChildren();
  const topK = $("#search-topk");
  const minScore = $("#search-minscore");
  const problems = [];
  const k = Number(topK.value);
  topK.toggleAttribute("aria-invalid", false);
  minScore.toggleAttribute("aria-invalid", false);
  if (!Number.isInteger(k) || k < 1 || k > 100) {
    problems.push({ field: "top_k", message: "a whole number from 1 to 100" });
    topK.setAttribute("aria-invalid", "true");
  }
  const min = minScore.value.trim();
  if (min !== "" && !(Number(min) >= -1 && Number(min) <= 1)) {
    problems.push({ field: "min_score", message: "a number from -1 to 1, or empty" });
    minScore.setAttribute("aria-invalid", "true");
  }
  if (!searchFile) problems.push({ field: "image", message: "choose, drop or paste a crop first (or search by description)" });
  if (problems.length) {
    showNotice(slot, problemNotice(new ApiError({ title: "Check the search", errors: problems })));
    return;
  }
  const filter = currentFilter();
  const form = new FormData();
  form.append("image", searchFile, searchFile.name || "pasted.png");
  form.append("top_k", String(k));
  if (min !== "") form.append("min_score", min);
  if (Object.keys(filter).length) form.append("filter", JSON.stringify(filter));
  description = null;
  await withBusy(button, "Searching…", async () => {
    try {
      const body = await api("v1/search", { method: "POST", form });
      const summary = [`${plural(body.matches.length, "identity", "identities")}, best first`];
      if (Object.keys(filter).length) summary.push(`filter ${filterText(filter)}`);
      if (min !== "") summary.push(`score ≥ ${min}`);
      results.replaceChildren(...resultsBlock(
        `Matches for ${searchFile.name || "the pasted crop"}`, summary.join(" · "),
        body.matches.map((match, index) => matchCard(match, index + 1, "Similarity")),
        "No enrolled identity matches. Lower the min score, loosen the attributes, or enroll this person."));
      results.querySelector("h2").focus();
    } catch (error) {
      showNotice(slot, problemNotice(error, "Search failed"));
    }
  });
}

async function searchByDescription(button, more = false) {
  const slot = $("#search-notice");
  const results = $("#search-results");
  slot.replaceChildren();
  if (!more) {
    const filter = currentFilter();
    if (!Object.keys(filter).length) {
      showNotice(slot, infoNotice("Pick at least one attribute (for example Upper color = red) to search by description.", "error"));
      $("#search-filter select")?.focus();
      return;
    }
    description = { filter, offset: 0, shown: 0 };
  }
  const state = description;
  await withBusy(button, more ? "Loading…" : "Searching…", async () => {
    try {
      const page = await api("v1/search/attributes", {
        query: { filter: JSON.stringify(state.filter), limit: DESCRIPTION_PAGE, offset: state.offset },
      });
      if (state !== description) return;
      const cards = page.matches.map((match, index) => matchCard(match, state.shown + index + 1, "Confidence"));
      state.shown += cards.length;
      state.offset = page.next_offset;
      if (more) {
        $("#search-cards")?.append(...cards);
        cards[0]?.querySelector("a")?.focus();
      } else {
        results.replaceChildren(...resultsBlock(
          "Matches for the description", `${filterText(state.filter)} · ordered by confidence`, cards,
          "No enrolled identity has all of these attributes."));
        results.querySelector("h2").focus();
      }
      $("#search-more")?.parentElement.remove();
      const summary = results.querySelector(".results-head p");
      summary.textContent = `${filterText(state.filter)} · ${plural(state.shown, "identity", "identities")} shown, ordered by confidence`;
      if (page.next_offset != null) {
        const next = h("button", { type: "button", class: "secondary", id: "search-more" }, "Show more");
        next.addEventListener("click", () => searchByDescription(next, true));
        results.append(h("div", { class: "more" }, next));
      }
    } catch (error) {
      showNotice(slot, problemNotice(error, "Search by description failed"));
    }
  });
}

// ---------------------------------------------------------------- Enroll

let enrollFiles = []; // [{file, url}]

function enrollMode() {
  return $("#enroll-form").elements.mode.value;
}

function applyEnrollMode() {
  const mode = enrollMode();
  for (const el of $$("#enroll-form [data-mode]")) el.toggleAttribute("data-mode-hidden", el.dataset.mode !== mode);
  $("#enroll-submit").textContent = mode === "new" ? "Enroll" : "Add images";
  $("#enroll-id").required = mode === "existing";
}

function renderEnrollFiles() {
  const list = $("#enroll-previews");
  list.replaceChildren(...enrollFiles.map((entry, index) => {
    const name = entry.file.name || `pasted ${index + 1}`;
    const remove = h("button", { type: "button", class: "secondary", "aria-label": `Remove ${name}` }, "Remove");
    remove.addEventListener("click", () => {
      URL.revokeObjectURL(entry.url);
      enrollFiles = enrollFiles.filter((other) => other !== entry);
      renderEnrollFiles();
      $("#enroll-drop button").focus();
    });
    return h("li", {}, h("img", { src: entry.url, alt: name }), h("p", { class: "name", title: name }, name), remove);
  }));
  $("#enroll-count").textContent = enrollFiles.length ? `${plural(enrollFiles.length, "image")} to upload.` : "No image yet.";
}

function addEnrollFiles(files) {
  const slot = $("#enroll-notice");
  const { images, rejected } = sortFiles(files);
  slot.replaceChildren();
  if (rejected.length) showNotice(slot, rejectedNotice(rejected));
  for (const file of images) enrollFiles.push({ file, url: URL.createObjectURL(file) });
  renderEnrollFiles();
}

function clearEnrollFiles() {
  for (const entry of enrollFiles) URL.revokeObjectURL(entry.url);
  enrollFiles = [];
  renderEnrollFiles();
}

function setFieldError(input, message) {
  const box = $(`#${input.id}-error`);
  if (message) input.setAttribute("aria-invalid", "true");
  else input.removeAttribute("aria-invalid");
  if (box) {
    box.textContent = message ?? "";
    box.hidden = !message;
  }
}

/** `metadata` must be a JSON object (the service says so too; this says it before the upload). */
function metadataProblem(text) {
  if (!text.trim()) return null;
  let value;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return `not valid JSON: ${error.message}`;
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) return "must be a JSON object, like {\"badge\": 4711}";
  return null;
}

function identityIdProblem(value, required) {
  if (!value) return required ? "enter the id of the enrolled identity" : null;
  return IDENTITY_ID.test(value) ? null : "only letters, digits, _ . - (1 to 64 of them)";
}

async function submitEnroll(button) {
  const slot = $("#enroll-notice");
  const result = $("#enroll-result");
  slot.replaceChildren();
  const mode = enrollMode();
  const idInput = $("#enroll-id");
  const metaInput = $("#enroll-metadata");
  const identityId = idInput.value.trim();
  const problems = [];
  const idProblem = identityIdProblem(identityId, mode === "existing");
  setFieldError(idInput, idProblem);
  if (idProblem) problems.push({ field: "identity_id", message: idProblem, input: idInput });
  const metaProblem = mode === "new" ? metadataProblem(metaInput.value) : null;
  setFieldError(metaInput, metaProblem);
  if (metaProblem) problems.push({ field: "metadata", message: metaProblem, input: metaInput });
  if (!enrollFiles.length) problems.push({ field: "images", message: "add at least one image", input: $("#enroll-drop button") });
  if (problems.length) {
    showNotice(slot, problemNotice(new ApiError({ title: "Check the form", errors: problems })));
    problems[0].input.focus();
    return;
  }
  const form = new FormData();
  for (const { file } of enrollFiles) form.append("images", file, file.name || "pasted.png");
  await withBusy(button, mode === "new" ? "Enrolling…" : "Adding…", async () => {
    try {
      if (mode === "new") {
        if (identityId) form.append("identity_id", identityId);
        const name = $("#enroll-name").value.trim();
        if (name) form.append("name", name);
        if (metaInput.value.trim()) form.append("metadata", metaInput.value.trim());
        const identity = await api("v1/identities", { method: "POST", form });
        result.replaceChildren(enrolledPanel(identity, `Enrolled from ${plural(identity.image_ids.length, "image")}.`));
        toast(`Enrolled ${identity.name || identity.identity_id}`);
        $("#enroll-form").reset();
        applyEnrollMode();
      } else {
        const added = await api(`v1/identities/${enc(identityId)}/images`, { method: "POST", form });
        const identity = await api(`v1/identities/${enc(identityId)}`).catch(() => null);
        result.replaceChildren(identity
          ? enrolledPanel(identity, `Added ${plural(added.image_ids.length, "image")}; it has ${plural(identity.image_ids.length, "image")} now.`)
          : infoNotice(`Added ${plural(added.image_ids.length, "image")} to ${added.identity_id}.`, "ok"));
        toast(`Added ${plural(added.image_ids.length, "image")} to ${added.identity_id}`);
      }
      clearEnrollFiles();
    } catch (error) {
      showNotice(slot, problemNotice(error, mode === "new" ? "Could not enroll" : "Could not add the images"));
      if (error.status === 409) slot.firstChild.append(h("p", {}, "Choose “an identity already enrolled” above to add these images to it."));
    }
  });
}

function enrolledPanel(identity, text) {
  const href = `#/gallery/${enc(identity.identity_id)}`;
  return h("div", { class: "notice ok enrolled", role: "status", "data-identity": identity.identity_id },
    thumbnail(identity.identity_id, identity.image_ids[0], `Stored image of ${identity.name || identity.identity_id}`),
    h("div", {},
      h("p", {}, h("strong", {}, identity.name || identity.identity_id), " ", h("code", {}, identity.identity_id)),
      h("p", {}, text, " ", h("a", { href }, "Open its page")),
      attributeChips(identity.attributes)));
}

// ---------------------------------------------------------------- Gallery

const gallery = { cursors: [null], page: 0, next: null };

async function showGalleryList(reload = true) {
  $("#gallery-list").hidden = false;
  $("#gallery-identity").hidden = true;
  if (!reload && $("#gallery-items").childElementCount) return;
  const slot = $("#gallery-notice");
  const list = $("#gallery-items");
  slot.replaceChildren();
  list.setAttribute("aria-busy", "true");
  const limit = Number($("#gallery-limit").value);
  try {
    const [page, ready] = await Promise.all([
      api("v1/identities", { query: { limit, cursor: gallery.cursors[gallery.page] } }),
      api("readyz").catch(() => null),
    ]);
    gallery.next = page.next_cursor;
    list.replaceChildren(...(page.items.length
      ? page.items.map(identityCard)
      : [h("li", { class: "empty" }, gallery.page ? "No more identities." : "No identity enrolled yet. ", gallery.page ? null : h("a", { href: "#/enroll" }, "Enroll one."))]));
    if (ready?.gallery) {
      $("#gallery-summary").textContent = `${plural(ready.gallery.identities ?? 0, "identity", "identities")}, ${plural(ready.gallery.images ?? 0, "image")} enrolled.`;
    }
  } catch (error) {
    list.replaceChildren();
    showNotice(slot, problemNotice(error, "Could not list the gallery"));
    gallery.next = null;
  } finally {
    list.removeAttribute("aria-busy");
  }
  $("#gallery-prev").disabled = gallery.page === 0;
  $("#gallery-next").disabled = !gallery.next;
  $("#gallery-page").textContent = `Page ${gallery.page + 1}`;
  $(".pager").hidden = gallery.page === 0 && !gallery.next;
}

function identityCard(identity) {
  const name = identity.name || identity.identity_id;
  const count = identity.image_ids.length;
  return h("li", { class: "card", "data-identity": identity.identity_id },
    thumbnail(identity.identity_id, identity.image_ids[0], `Stored image of ${name}`),
    h("div", {},
      h("h3", {}, h("a", { href: `#/gallery/${enc(identity.identity_id)}` }, name)),
      identity.name ? h("p", { class: "ident" }, identity.identity_id) : null,
      h("p", { class: "meta" }, `${plural(count, "image")} · ${formatDate(identity.created_at)}`)));
}

async function showIdentity(identityId, focus) {
  $("#gallery-list").hidden = true;
  $("#gallery-identity").hidden = false;
  const slot = $("#identity-notice");
  const detail = $("#identity-detail");
  slot.replaceChildren();
  detail.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  document.title = `${identityId} · Gallery · personid`;
  try {
    const [identity] = await Promise.all([api(`v1/identities/${enc(identityId)}`), loadModel().catch(() => null)]);
    renderIdentity(identity);
    if (focus) $("#identity-title").focus();
  } catch (error) {
    detail.replaceChildren(h("h1", { id: "identity-title", tabindex: "-1" }, identityId));
    showNotice(slot, problemNotice(error, "Could not load the identity"));
    if (focus) $("#identity-title").focus();
  }
}

function renderIdentity(identity) {
  const name = identity.name || identity.identity_id;
  const remove = h("button", { type: "button", class: "danger", id: "identity-delete" }, "Delete identity");
  remove.addEventListener("click", () => deleteIdentity(identity, remove));
  const attrs = orderedAttributes(identity.attributes);
  const metadata = identity.metadata ?? {};
  $("#identity-detail").replaceChildren(
    h("div", { class: "identity-head" },
      h("div", {},
        h("h1", { id: "identity-title", tabindex: "-1" }, name),
        h("p", { class: "ident" }, "id ", h("code", {}, identity.identity_id))),
      h("div", { class: "actions" },
        h("a", { class: "button secondary", href: `#/enroll/${enc(identity.identity_id)}` }, "Add images"),
        remove)),
    h("div", { class: "identity-grid" },
      h("section", { class: "panel", "aria-labelledby": "identity-attrs" },
        h("h2", { id: "identity-attrs" }, "Attributes"),
        h("p", { class: "hint" }, "Per head, the label its images voted for and their mean score."),
        attrs.length
          ? h("div", { class: "table-wrap" }, h("table", { class: "attrs" },
            h("thead", { class: "sr-only" }, h("tr", {}, h("th", { scope: "col" }, "Head"), h("th", { scope: "col" }, "Label"), h("th", { scope: "col" }, "Score bar"), h("th", { scope: "col" }, "Score"))),
            h("tbody", {}, attrs.map(([head, value]) => h("tr", { "data-head": head },
              h("th", { scope: "row" }, humanize(head)), h("td", {}, value.label),
              h("td", { class: "barcell" }, bar(value.score)), h("td", {}, pct(value.score)))))))
          : h("p", { class: "muted" }, "None stored.")),
      h("section", { class: "panel", "aria-labelledby": "identity-facts" },
        h("h2", { id: "identity-facts" }, "Details"),
        h("dl", { class: "facts" },
          h("dt", {}, "Name"), h("dd", {}, identity.name || "—"),
          h("dt", {}, "Images"), h("dd", {}, String(identity.image_ids.length)),
          h("dt", {}, "Enrolled"), h("dd", {}, formatDate(identity.created_at)),
          h("dt", {}, "Updated"), h("dd", {}, formatDate(identity.updated_at))),
        h("h3", { class: "subhead" }, "Metadata"),
        Object.keys(metadata).length
          ? h("pre", { class: "json" }, JSON.stringify(metadata, null, 2))
          : h("p", { class: "muted" }, "None.")),
      h("section", { class: "panel wide", "aria-labelledby": "identity-images" },
        h("h2", { id: "identity-images" }, `Images (${identity.image_ids.length})`),
        h("ul", { class: "images" }, identity.image_ids.map((imageId, index) =>
          h("li", { title: imageId },
            thumbnail(identity.identity_id, imageId, `Image ${index + 1} of ${name}`),
            h("span", { class: "ident" }, imageId.slice(0, 8))))))));
}

function confirm(text, okLabel) {
  const dialog = $("#confirm-dialog");
  $("#confirm-text").textContent = text;
  $("#confirm-ok").textContent = okLabel;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true });
    dialog.showModal();
  });
}

async function deleteIdentity(identity, button) {
  const name = identity.name ? `${identity.name} (${identity.identity_id})` : identity.identity_id;
  const ok = await confirm(
    `${name} and all ${plural(identity.image_ids.length, "image")} of it will be deleted; it will no longer be found by searches. This cannot be undone.`,
    "Delete");
  if (!ok) {
    button.focus();
    return;
  }
  const slot = $("#identity-notice");
  slot.replaceChildren();
  await withBusy(button, "Deleting…", async () => {
    try {
      await api(`v1/identities/${enc(identity.identity_id)}`, { method: "DELETE" });
      toast(`Deleted ${name}`);
      location.hash = "#/gallery";
    } catch (error) {
      showNotice(slot, problemNotice(error, "Could not delete"));
    }
  });
}

// ---------------------------------------------------------------- Status

function metric(metrics, path) {
  const value = path.split(".").reduce((node, part) => (node && typeof node === "object" ? node[part] : undefined), metrics);
  return typeof value === "number" ? value.toFixed(3) : null;
}

async function loadStatus() {
  const readyBox = $("#status-ready");
  const modelBox = $("#status-model");
  const headsBox = $("#status-heads");
  const button = $("#status-refresh");
  await withBusy(button, "Refreshing…", async () => {
    const [ready, model] = await Promise.allSettled([api("readyz"), (resetModel(), loadModel())]);
    if (ready.status === "fulfilled") {
      const body = ready.value;
      readyBox.replaceChildren(
        h("p", {}, h("span", { class: "badge ok", "data-ready": "true" }, "Ready")),
        h("div", { class: "counts" },
          h("div", {}, h("span", { class: "n", id: "count-identities" }, String(body.gallery?.identities ?? "–")), h("span", { class: "what" }, "identities")),
          h("div", {}, h("span", { class: "n", id: "count-images" }, String(body.gallery?.images ?? "–")), h("span", { class: "what" }, "images"))),
        h("dl", { class: "facts" },
          h("dt", {}, "Model id"), h("dd", {}, h("code", {}, body.model_id)),
          h("dt", {}, "Providers"), h("dd", {}, (body.providers ?? []).join(", "))));
    } else {
      readyBox.replaceChildren(h("p", {}, h("span", { class: "badge bad", "data-ready": "false" }, "Not ready")),
        problemNotice(ready.reason, "Readiness"));
    }
    if (model.status === "fulfilled") {
      const body = model.value;
      const manifest = body.manifest ?? {};
      const input = manifest.input ?? {};
      const metrics = manifest.metrics ?? {};
      const facts = [
        ["Name", body.name],
        ["Model id", h("code", {}, body.model_id)],
        ["Backbone", manifest.backbone],
        ["Precision", manifest.precision],
        ["Input", input.height && input.width ? `${input.height} × ${input.width} ${input.color_order ?? ""}` : null],
        ["Embedding", manifest.outputs?.embedding?.dim ? `${manifest.outputs.embedding.dim} dimensions` : null],
        ["Providers", (body.providers ?? []).join(", ")],
        ["Exported", manifest.created ? formatDate(manifest.created) : null],
        ["Trained on", manifest.training?.dataset],
        ["Rank-1", metric(metrics, "reid.rank1")],
        ["mAP", metric(metrics, "reid.mAP")],
        ["Attribute mA", metric(metrics, "attributes.mA")],
      ].filter(([, value]) => value != null && value !== "");
      modelBox.replaceChildren(h("dl", { class: "facts" }, facts.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)])));
      const rows = groupedHeads(body).flatMap(([group, heads]) => heads.map((head) =>
        h("tr", {}, h("td", { class: "col-group" }, humanize(group)), h("th", { scope: "row" }, head.name), h("td", {}, head.type), h("td", {}, head.labels.join(", ")))));
      headsBox.replaceChildren(h("div", { class: "table-wrap" }, h("table", { class: "heads" },
        h("thead", {}, h("tr", {}, ["Group", "Head", "Type", "Labels"].map((title) => h("th", { scope: "col", class: `col-${title.toLowerCase()}` }, title)))),
        h("tbody", {}, rows))));
    } else {
      modelBox.replaceChildren(problemNotice(model.reason, "Model"));
      headsBox.replaceChildren(h("p", { class: "muted" }, "Unknown until the model answers."));
    }
  });
}

// ---------------------------------------------------------------- routing

function parseHash() {
  const match = /^#\/([a-z]+)(?:\/(.*))?$/.exec(location.hash);
  const view = match && VIEWS.includes(match[1]) ? match[1] : "analyse";
  let arg = null;
  try {
    arg = match?.[2] ? decodeURIComponent(match[2]) : null;
  } catch {
    arg = null;
  }
  return { view, arg };
}

let currentView = null;

async function route({ focus = false, reload = false } = {}) {
  const { view, arg } = parseHash();
  currentView = view;
  for (const section of $$("main > .view")) section.hidden = section.dataset.view !== view;
  for (const link of $$(".tabs a")) {
    if (link.dataset.view === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${TITLES[view]} · personid`;
  const heading = () => $(`#view-${view} h1`);
  if (focus && !(view === "gallery" && arg)) heading()?.focus();
  if (view === "search") {
    buildFilter(reload);
  } else if (view === "enroll") {
    if (arg) {
      $("#enroll-form").elements.mode.value = "existing";
      $("#enroll-id").value = arg;
      applyEnrollMode();
    }
  } else if (view === "gallery") {
    if (arg) await showIdentity(arg, focus);
    else await showGalleryList();
  } else if (view === "status") {
    await loadStatus();
  }
}

// ---------------------------------------------------------------- wiring

function init() {
  const keyInput = $("#api-key");
  keyInput.value = readKey();
  showKeyState();
  $("#apikey-form").addEventListener("submit", (event) => {
    event.preventDefault();
    useKey(keyInput.value);
  });
  $("#api-key-clear").addEventListener("click", () => {
    keyInput.value = "";
    useKey("");
    keyInput.focus();
  });

  $("#skip-link").addEventListener("click", (event) => {
    event.preventDefault();
    (currentView && $(`#view-${currentView} h1`)) ? $(`#view-${currentView} h1`).focus() : $("#main").focus();
  });

  for (const button of $$("[data-pick]")) button.addEventListener("click", () => document.getElementById(button.dataset.pick).click());

  // a file dropped outside a drop zone must not navigate away from the page
  for (const type of ["dragover", "drop"]) window.addEventListener(type, (event) => event.preventDefault());

  dropZone($("#analyse-drop"), $("#analyse-file"), analyse);
  dropZone($("#search-drop"), $("#search-file"), setSearchFile);
  dropZone($("#enroll-drop"), $("#enroll-files"), addEnrollFiles);
  Object.assign(pasteTargets, { analyse, search: setSearchFile, enroll: addEnrollFiles });
  document.addEventListener("paste", (event) => {
    const files = [...(event.clipboardData?.files ?? [])].filter(isImage);
    const target = pasteTargets[currentView];
    if (!files.length || !target) return; // plain text pastes into fields as usual
    event.preventDefault();
    target(files);
  });

  $("#search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const button = event.submitter ?? $("#search-image-button");
    if (button.dataset.action === "description") searchByDescription(button);
    else searchByImage($("#search-image-button"));
  });
  $("#search-filter-clear").addEventListener("click", () => {
    for (const select of $$("#search-filter select")) {
      select.value = "";
      select.classList.remove("active");
    }
  });

  const form = $("#enroll-form");
  for (const radio of form.elements.mode) radio.addEventListener("change", applyEnrollMode);
  applyEnrollMode();
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitEnroll($("#enroll-submit"));
  });
  $("#enroll-reset").addEventListener("click", () => {
    form.reset();
    clearEnrollFiles();
    setFieldError($("#enroll-id"), null);
    setFieldError($("#enroll-metadata"), null);
    $("#enroll-notice").replaceChildren();
    applyEnrollMode();
  });
  let metaTimer = 0;
  $("#enroll-metadata").addEventListener("input", (event) => {
    clearTimeout(metaTimer);
    metaTimer = setTimeout(() => setFieldError(event.target, metadataProblem(event.target.value)), 300);
  });
  $("#enroll-id").addEventListener("change", (event) =>
    setFieldError(event.target, identityIdProblem(event.target.value.trim(), enrollMode() === "existing")));

  $("#gallery-prev").addEventListener("click", () => {
    gallery.page = Math.max(0, gallery.page - 1);
    showGalleryList();
  });
  $("#gallery-next").addEventListener("click", () => {
    if (!gallery.next) return;
    gallery.cursors[gallery.page + 1] = gallery.next;
    gallery.page += 1;
    showGalleryList();
  });
  $("#gallery-limit").addEventListener("change", () => {
    Object.assign(gallery, { cursors: [null], page: 0, next: null });
    showGalleryList();
  });
  $("#gallery-refresh").addEventListener("click", () => withBusy($("#gallery-refresh"), "Refreshing…", () => showGalleryList()));
  $("#status-refresh").addEventListener("click", () => loadStatus());

  window.addEventListener("hashchange", () => route({ focus: true }));
  loadModel().catch(() => null); // orders attribute lists; errors show where the model is needed
  route();
}

init();
