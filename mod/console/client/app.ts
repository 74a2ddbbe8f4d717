/**
 * The console's one browser script: live service-graph edges over server-sent events, node
 * details on click, and selects that submit their form. Runs in the page, so it reaches only the
 * DOM and the admin server's /ui/ paths; no imports (it is transpiled alone into the binary).
 * The few DOM types it uses are declared here, so the project's type check stays without the
 * DOM library.
 */

interface El {
  getAttribute(name: string): string | null;
  setAttribute(name: string, value: string): void;
  querySelector(sel: string): El | null;
  closest(sel: string): El | null;
  addEventListener(type: string, fn: (ev: { target: unknown; data?: string }) => void): void;
  classList: { toggle(name: string, on: boolean): void };
  textContent: string | null;
  innerHTML: string;
  form?: { submit(): void } | null;
}

interface Dom {
  document: { getElementById(id: string): El | null; querySelectorAll(sel: string): ArrayLike<El> };
  EventSource?: new (url: string) => El;
  CSS: { escape(s: string): string };
}

const dom = globalThis as unknown as Dom;

interface EdgeUpdate {
  /** "source->destination", as the SVG's data-edge attributes. */
  readonly id: string;
  readonly label: string;
  readonly title: string;
  readonly err: boolean;
}

interface GraphUpdate {
  /** Identifies the set of nodes and edges; a different one means the layout changed. */
  readonly layout: string;
  readonly edges: readonly EdgeUpdate[];
}

/** The graph's window and namespace filter as a query string. */
function query(root: El): string {
  const win = encodeURIComponent(root.getAttribute("data-window") ?? "");
  return `window=${win}&ns=${encodeURIComponent(root.getAttribute("data-ns") ?? "")}`;
}

function applyEdges(root: El, u: GraphUpdate): void {
  for (const e of u.edges) {
    const g = root.querySelector(`[data-edge="${dom.CSS.escape(e.id)}"]`);
    if (!g) continue;
    const text = g.querySelector("text");
    if (text) text.textContent = e.label;
    const title = g.querySelector("title");
    if (title) title.textContent = e.title;
    g.classList.toggle("err", e.err);
  }
  const at = dom.document.getElementById("graph-at");
  if (at) at.textContent = new Date().toISOString();
}

function applyUpdate(root: El, u: GraphUpdate): void {
  if (root.getAttribute("data-layout") === u.layout) {
    applyEdges(root, u);
    return;
  }
  fetch(`/ui/graph/svg?${query(root)}`).then((r) => r.text()).then((t) => {
    root.innerHTML = t;
    root.setAttribute("data-layout", u.layout);
    applyEdges(root, u);
  });
}

function watchGraph(): void {
  const root = dom.document.getElementById("graph");
  if (!root || dom.EventSource === undefined) return;
  const es = new dom.EventSource(`/ui/graph/events?${query(root)}`);
  es.addEventListener("graph", (ev) => applyUpdate(root, JSON.parse(ev.data ?? "{}") as GraphUpdate));
  root.addEventListener("click", (ev) => {
    const node = (ev.target as El).closest("[data-node]");
    const panel = dom.document.getElementById("node-details");
    if (!node || !panel) return;
    const name = node.getAttribute("data-node") ?? "";
    fetch(`/ui/graph/node?name=${encodeURIComponent(name)}&${query(root)}`)
      .then((r) => r.text())
      .then((t) => {
        panel.innerHTML = t;
      });
  });
}

function autoSubmit(): void {
  const list = dom.document.querySelectorAll("select[data-submit]");
  for (let i = 0; i < list.length; i++) {
    const el = list[i]!;
    el.addEventListener("change", () => el.form?.submit());
  }
}

watchGraph();
autoSubmit();
