/**
 * The service graph's layout, decided on the server and deterministic: nodes in columns by call
 * depth (callers left of what they call, the longest path from a node nothing calls), ordered by
 * name within a column. Pure: the same edges always give the same picture.
 *
 * @module
 */

/** A placed node. */
export interface PlacedNode {
  readonly name: string;
  readonly x: number;
  readonly y: number;
  readonly depth: number;
}

/** The layout of a graph. */
export interface GraphLayout {
  readonly nodes: readonly PlacedNode[];
  readonly width: number;
  readonly height: number;
}

/** Horizontal distance between columns and vertical distance between rows, in SVG units. */
export const COLUMN = 380;
export const ROW = 70;
const MARGIN = 150;

/**
 * Depth of every node: 0 for nodes without callers (and for nodes only on cycles), else one more
 * than the deepest caller, following each edge at most once per pass (cycles end).
 */
export function callDepths(
  names: readonly string[],
  edges: readonly (readonly [string, string])[],
): Map<string, number> {
  const depth = new Map(names.map((n) => [n, 0]));
  // Bellman-Ford style relaxation, at most |nodes| passes: cycles cannot grow depths past that.
  for (let pass = 0; pass < names.length; pass++) {
    let changed = false;
    for (const [from, to] of edges) {
      if (from === to) continue;
      const want = (depth.get(from) ?? 0) + 1;
      if (want > (depth.get(to) ?? 0) && want < names.length) {
        depth.set(to, want);
        changed = true;
      }
    }
    if (!changed) break;
  }
  return depth;
}

/** Places `names` with `edges` (source, destination) between them. */
export function layoutGraph(
  names: readonly string[],
  edges: readonly (readonly [string, string])[],
): GraphLayout {
  const sorted = [...new Set(names)].sort();
  const depth = callDepths(sorted, edges);
  const columns = new Map<number, string[]>();
  for (const n of sorted) {
    const d = depth.get(n) ?? 0;
    const col = columns.get(d);
    if (col) col.push(n);
    else columns.set(d, [n]);
  }
  const nodes: PlacedNode[] = [];
  let maxRows = 0;
  const depths = [...columns.keys()].sort((a, b) => a - b);
  depths.forEach((d, i) => {
    const col = columns.get(d)!;
    maxRows = Math.max(maxRows, col.length);
    col.forEach((name, row) =>
      nodes.push({ name, depth: d, x: MARGIN + i * COLUMN, y: MARGIN / 2 + row * ROW })
    );
  });
  return {
    nodes,
    width: MARGIN * 2 + Math.max(0, depths.length - 1) * COLUMN,
    height: MARGIN + Math.max(0, maxRows - 1) * ROW + 20,
  };
}
