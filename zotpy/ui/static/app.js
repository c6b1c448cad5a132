// zotpy's web UI: a repository list with search, a repository page and an image page, all built
// from zot's GraphQL search API (/v2/_zot/ext/search). Text from the registry (names, tags,
// annotations) only ever goes into the page through textContent: never parsed as HTML.
"use strict";

const API = "/v2/_zot/ext/search";
const main = document.getElementById("main");
const search = document.getElementById("search");

async function gql(query, variables) {
  const response = await fetch(API, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ query: query, variables: variables || {} }),
  });
  const document_ = await response.json();
  if (document_.errors && document_.errors.length) {
    throw new Error(document_.errors.map((e) => e.message).join("; "));
  }
  if (!response.ok) throw new Error("the search API answered " + response.status);
  return document_.data;
}

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value !== null && value !== undefined) node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function table(headings, rows, id) {
  return el("table", { id: id },
    el("thead", {}, el("tr", {}, headings.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) => (c instanceof Node && c.tagName === "TD") ? c : el("td", {}, c))))));
}

function mono(text) { return el("td", { class: "mono" }, text === null || text === undefined ? "" : text); }

function facts(pairs) {
  return el("dl", { class: "facts" }, pairs.filter((p) => p[1] !== null && p[1] !== undefined && p[1] !== "")
    .flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

function size(bytes) {
  let value = Number(bytes || 0);
  for (const unit of ["B", "KB", "MB", "GB", "TB"]) {
    if (value < 1000 || unit === "TB") return (unit === "B" ? value : value.toFixed(1)) + " " + unit;
    value /= 1000;
  }
}

function when(time) { return time ? new Date(time).toLocaleString() : "never"; }
function short(digest) { return digest ? digest.replace(/^sha256:/, "").slice(0, 12) : ""; }
function platforms(list) { return (list || []).filter((p) => p && (p.Os || p.Arch)).map((p) => el("span", { class: "badge" }, (p.Os || "?") + "/" + (p.Arch || "?"))); }
function repoLink(name) { return el("a", { href: "#/repo/" + encodeURIComponent(name), class: "repo-link" }, name); }
function imageLink(repo, reference, text) {
  return el("a", { href: "#/image/" + encodeURIComponent(repo) + "/" + encodeURIComponent(reference), class: "image-link" }, text || reference);
}

function show(...nodes) { main.replaceChildren(...nodes); }
function failed(error) { show(el("p", { class: "error", id: "error" }, error.message)); }

// -- pages ------------------------------------------------------------------------------------

const REPO_FIELDS = "Name LastUpdated Size DownloadCount Platforms { Os Arch } NewestImage { Tag }";

async function home(query) {
  search.value = query || "";
  show(el("p", { class: "muted" }, "Loading…"));
  if (query && query.includes(":")) {
    const data = await gql("query($q: String!) { GlobalSearch(query: $q) { Page { TotalCount } Images { RepoName Tag Digest Size LastUpdated } } }", { q: query });
    const found = data.GlobalSearch;
    show(el("h1", {}, "Images matching “" + query + "”"),
      el("p", { class: "muted" }, found.Page.TotalCount + " found"),
      table(["Image", "Digest", "Size", "Pushed"], found.Images.map((i) => [
        el("td", {}, imageLink(i.RepoName, i.Tag, i.RepoName + ":" + i.Tag)), mono(short(i.Digest)), size(i.Size), when(i.LastUpdated)]), "images"));
    return;
  }
  const data = await gql("query($q: String!) { GlobalSearch(query: $q, requestedPage: {sortBy: ALPHABETIC_ASC}) { Page { TotalCount } Repos { " + REPO_FIELDS + " } } }", { q: query || "" });
  const found = data.GlobalSearch;
  show(el("h1", {}, query ? "Repositories matching “" + query + "”" : "Repositories"),
    el("p", { class: "muted" }, found.Page.TotalCount + " repositories"),
    table(["Repository", "Newest tag", "Platforms", "Size", "Last push", "Downloads"], found.Repos.map((r) => [
      el("td", {}, repoLink(r.Name)), r.NewestImage ? r.NewestImage.Tag : "", el("td", {}, platforms(r.Platforms)),
      size(r.Size), when(r.LastUpdated), String(r.DownloadCount)]), "repos"));
}

function pullCommand(repo, tag) {
  const command = "docker pull " + location.host + "/" + repo + ":" + tag;
  const button = el("button", { type: "button" }, "Copy");
  button.addEventListener("click", () => {
    navigator.clipboard.writeText(command).then(() => { button.textContent = "Copied"; }, () => { button.textContent = "Select and copy"; });
  });
  return el("div", { class: "pull" }, el("code", { id: "pull-command" }, command), button);
}

async function repository(name) {
  show(el("p", { class: "muted" }, "Loading…"));
  const data = await gql("query($r: String!) { ExpandedRepoInfo(repo: $r) { Summary { " + REPO_FIELDS + " Vendors } Images { Tag Digest MediaType Size LastUpdated DownloadCount IsSigned Manifests { Platform { Os Arch } } } } }", { r: name });
  const info = data.ExpandedRepoInfo;
  const summary = info.Summary;
  const newest = summary.NewestImage ? summary.NewestImage.Tag : (info.Images[0] ? info.Images[0].Tag : "latest");
  show(el("h1", { id: "repo-name" }, summary.Name),
    facts([["Size", size(summary.Size)], ["Last push", when(summary.LastUpdated)], ["Downloads", String(summary.DownloadCount)],
      ["Vendors", (summary.Vendors || []).join(", ")], ["Platforms", el("span", {}, platforms(summary.Platforms))]]),
    pullCommand(summary.Name, newest),
    el("h2", {}, "Tags"),
    table(["Tag", "Digest", "Platforms", "Size", "Pushed", "Downloads", "Signed"], info.Images.map((i) => [
      el("td", {}, imageLink(summary.Name, i.Tag)), mono(short(i.Digest)),
      el("td", {}, platforms(i.Manifests.map((m) => m.Platform))), size(i.Size), when(i.LastUpdated), String(i.DownloadCount), i.IsSigned ? "yes" : "no"]), "tags"));
}

const MANIFEST_FIELDS = "Digest ConfigDigest Size ArtifactType LastUpdated Platform { Os Arch } Layers { Digest Size } History { Layer { Digest } HistoryDescription { Created CreatedBy EmptyLayer Comment } } Referrers { MediaType ArtifactType Digest Size Annotations { Key Value } }";

function referrers(list, id) {
  return table(["Artifact type", "Digest", "Size", "Annotations"], (list || []).map((r) => [
    r.ArtifactType || r.MediaType, mono(short(r.Digest)), size(r.Size),
    el("td", {}, (r.Annotations || []).map((a) => el("div", {}, a.Key + " = " + a.Value)))]), id);
}

async function image(repo, reference) {
  show(el("p", { class: "muted" }, "Loading…"));
  const spec = reference.startsWith("sha256:") ? repo + "@" + reference : repo + ":" + reference;
  const data = await gql("query($i: String!) { Image(image: $i) { RepoName Tag Digest MediaType Size LastUpdated DownloadCount IsSigned Title Description Vendor Licenses Source Documentation Authors Manifests { " + MANIFEST_FIELDS + " } Referrers { MediaType ArtifactType Digest Size Annotations { Key Value } } } }", { i: spec });
  const i = data.Image;
  const sections = [
    el("h1", { id: "image-name" }, el("a", { href: "#/repo/" + encodeURIComponent(i.RepoName) }, i.RepoName), ":" + (i.Tag || reference)),
    facts([["Digest", i.Digest], ["Media type", i.MediaType], ["Size", size(i.Size)], ["Pushed", when(i.LastUpdated)],
      ["Downloads", String(i.DownloadCount)], ["Signed", i.IsSigned ? "yes" : "no"]]),
    i.Tag ? pullCommand(i.RepoName, i.Tag) : null,
    el("h2", {}, "Annotations"),
    table(["Key", "Value"], [["Title", i.Title], ["Description", i.Description], ["Vendor", i.Vendor], ["Licenses", i.Licenses],
      ["Source", i.Source], ["Documentation", i.Documentation], ["Authors", i.Authors]].filter((p) => p[1]), "annotations"),
  ];
  if (i.MediaType && i.MediaType.includes("index")) {
    sections.push(el("h2", {}, "Referrers of the index"), referrers(i.Referrers, "index-referrers"));
  }
  i.Manifests.forEach((m, n) => {
    const platform = m.Platform && (m.Platform.Os || m.Platform.Arch) ? (m.Platform.Os || "?") + "/" + (m.Platform.Arch || "?") : "";
    sections.push(
      el("h2", { class: "manifest" }, "Manifest " + (platform || short(m.Digest))),
      facts([["Digest", m.Digest], ["Config", m.ConfigDigest], ["Artifact type", m.ArtifactType], ["Size", size(m.Size)]]),
      el("h2", {}, "Layers"),
      table(["#", "Digest", "Size"], m.Layers.map((l, k) => [String(k + 1), mono(l.Digest), size(l.Size)]), "layers-" + n),
      el("h2", {}, "History"),
      table(["Created", "Created by", "Layer"], m.History.map((h) => [
        h.HistoryDescription.Created || "", mono(h.HistoryDescription.CreatedBy || h.HistoryDescription.Comment || ""),
        h.HistoryDescription.EmptyLayer ? "(empty)" : mono(short(h.Layer && h.Layer.Digest))]), "history-" + n),
      el("h2", {}, "Referrers (signatures, SBOMs, attestations)"),
      referrers(m.Referrers, "referrers-" + n));
  });
  show(...sections.filter((s) => s));
}

// -- routing ----------------------------------------------------------------------------------

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  let page;
  if (parts[0] === "repo" && parts[1]) page = repository(parts[1]);
  else if (parts[0] === "image" && parts[1] && parts[2]) page = image(parts[1], parts[2]);
  else page = home(parts[0] === "search" ? parts.slice(1).join("/") : "");
  page.catch(failed);
}

document.getElementById("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  location.hash = "#/search/" + encodeURIComponent(search.value.trim());
});
window.addEventListener("hashchange", route);
route();
