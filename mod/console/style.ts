/**
 * The console's style sheet: one small sheet, system fonts, no images.
 *
 * @module
 */

/** The CSS every page links. */
export const STYLE =
  `*{box-sizing:border-box}body{margin:0;font:14px/1.4 system-ui,sans-serif;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:.5rem 1rem;display:flex;gap:1rem;align-items:center;flex-wrap:wrap}
header a{color:#cfd6e6;text-decoration:none}header a.on{color:#fff;font-weight:600}header b{margin-right:1rem}
main{padding:1rem;max-width:1400px}h1{font-size:1.3rem;margin:.2rem 0 1rem}h2{font-size:1.05rem;margin:1.4rem 0 .4rem}
table{border-collapse:collapse;background:#fff;width:100%;margin:.3rem 0}th,td{text-align:left;padding:.25rem .5rem;border-bottom:1px solid #e3e6eb;vertical-align:top}
th{background:#eef0f4;font-weight:600}td code,pre{font:12px ui-monospace,monospace}pre{background:#fff;padding:.5rem;overflow:auto;max-height:40rem;border:1px solid #e3e6eb}
.b{display:inline-block;padding:0 .4rem;border-radius:.6rem;font-size:12px}.ok{background:#dff3e4;color:#14602b}.warn{background:#fff1cc;color:#7a5300}.bad{background:#fde2e1;color:#9b1c1c}.info{background:#e3ecfb;color:#1f4f9b}
.muted{color:#6b7280}.cards{display:flex;gap:.8rem;flex-wrap:wrap}.card{background:#fff;border:1px solid #e3e6eb;padding:.6rem 1rem;min-width:9rem}.card b{display:block;font-size:1.5rem}
form{background:#fff;border:1px solid #e3e6eb;padding:.6rem;display:flex;gap:.5rem;flex-wrap:wrap;align-items:end}label{display:flex;flex-direction:column;font-size:12px}
input,select,button{font:inherit;padding:.2rem .4rem}.pager{margin:.4rem 0}
#graph svg{background:#fff;border:1px solid #e3e6eb;max-width:100%;height:auto}#graph .n{cursor:pointer}#graph .n circle{fill:#e3ecfb;stroke:#1f4f9b}#graph .n.vm circle{fill:#fff1cc;stroke:#7a5300}
#graph .n text{font-size:11px;text-anchor:middle}#graph .e path{stroke:#7a8499;fill:none;marker-end:url(#arrow)}#graph .e.err path{stroke:#c62828}#graph .e text{font-size:9px;fill:#374151;paint-order:stroke;stroke:#fff;stroke-width:3px}#graph path.s{stroke:#b8c0d0;stroke-dasharray:4 3;fill:none}
.del{background:#fde2e1}.add{background:#dff3e4}`;
