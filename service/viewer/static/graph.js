// The ASL graph: states as boxes in layers from top to bottom, edges for Next, Default,
// Choices and Catch, Map and Parallel as groups holding their inner state machines. Laid out
// here (no library): longest-path layers, a few barycentre sweeps to order each layer, then
// each node pulled towards its predecessors. Drawn in SVG.

import { s, h } from './dom.js';

const NODE_H = 46;
const GAP_X = 28;
const GAP_Y = 46;
const PAD = 16;
const HEAD = 44;
const CHAR_W = 7.4;

/** The path of a state inside a Map's processor or a Parallel's branch (the scheme of
 * GET /executions/{id}/states). */
export function childPrefix(path, type, index) {
  return type === 'Map' ? `${path}/ItemProcessor` : `${path}/branch ${index}`;
}

export const STATUSES = [
  ['not_reached', 'Not reached', '○'],
  ['running', 'Running', '●'],
  ['succeeded', 'Succeeded', '✓'],
  ['failed', 'Failed', '✗'],
  ['caught', 'Failed, caught', '⚠'],
  ['retried', 'Retried', '↻'],
];
const ICON = Object.fromEntries(STATUSES.map(([k, , i]) => [k, i]));
const LABEL = Object.fromEntries(STATUSES.map(([k, l]) => [k, l]));

function catchLabel(rule) {
  const errors = rule.ErrorEquals || [];
  return `Catch ${errors.length > 2 ? `${errors.slice(0, 2).join(', ')}…` : errors.join(', ')}`;
}

function choiceLabel(rule, i) {
  if (typeof rule.Condition === 'string') {
    const c = rule.Condition.replace(/^\{%\s*|\s*%\}$/g, '');
    return c.length > 28 ? `${c.slice(0, 27)}…` : c;
  }
  const op = Object.keys(rule).find((k) => !['Next', 'Variable', 'Comment', 'Assign', 'Output'].includes(k));
  if (rule.Variable && op) {
    const v = String(rule.Variable).replace(/^\$\.?/, '');
    const val = rule[op];
    let text = `${v} ${op.replace(/Path$/, '')}${typeof val === 'object' ? '' : ` ${val}`}`;
    if (text.length > 28) text = `${text.slice(0, 27)}…`;
    return text;
  }
  return `Rule ${i + 1}`;
}

/** The graph model of a (sub) state machine: nodes by path, edges, and groups' children. */
export function buildGraph(definition, prefix = '') {
  const states = (definition && typeof definition.States === 'object' && definition.States) || {};
  const startId = `${prefix}#start`;
  const endId = `${prefix}#end`;
  const nodes = new Map();
  const edges = [];
  nodes.set(startId, { id: startId, kind: 'start', name: 'Start' });
  const pathOf = (name) => (prefix ? `${prefix}/${name}` : name);
  let hasEnd = false;
  for (const [name, st] of Object.entries(states)) {
    const path = pathOf(name);
    const node = { id: path, kind: 'state', name, type: (st && st.Type) || '?', state: st || {} };
    if (node.type === 'Map') {
      const inner = st.ItemProcessor || st.Iterator;
      node.children = inner ? [buildGraph(inner, childPrefix(path, 'Map', 0))] : [];
    } else if (node.type === 'Parallel') {
      node.children = (Array.isArray(st.Branches) ? st.Branches : []).map((b, i) =>
        buildGraph(b, childPrefix(path, 'Parallel', i)));
    }
    nodes.set(path, node);
  }
  const link = (from, target, kind, label) => {
    const to = pathOf(target);
    if (typeof target === 'string' && nodes.has(to)) edges.push({ from, to, kind, label });
  };
  if (typeof definition?.StartAt === 'string' && nodes.has(pathOf(definition.StartAt))) {
    edges.push({ from: startId, to: pathOf(definition.StartAt), kind: 'next' });
  }
  for (const node of nodes.values()) {
    if (node.kind !== 'state') continue;
    const st = node.state;
    if (node.type === 'Choice') {
      (Array.isArray(st.Choices) ? st.Choices : []).forEach((rule, i) =>
        link(node.id, rule && rule.Next, 'choice', choiceLabel(rule || {}, i)));
      if (st.Default) link(node.id, st.Default, 'default', 'Default');
    } else if (st.Next) {
      link(node.id, st.Next, 'next');
    }
    if (st.End === true || node.type === 'Succeed' || node.type === 'Fail') {
      edges.push({ from: node.id, to: endId, kind: node.type === 'Fail' ? 'fail' : 'next' });
      hasEnd = true;
    }
    for (const rule of Array.isArray(st.Catch) ? st.Catch : []) {
      link(node.id, rule && rule.Next, 'catch', catchLabel(rule || {}));
    }
  }
  if (hasEnd) nodes.set(endId, { id: endId, kind: 'end', name: 'End' });
  return { prefix, startId, endId, nodes, edges };
}

function textWidth(text, size = 1) {
  return Math.ceil(String(text).length * CHAR_W * size);
}

function measure(graph) {
  for (const node of graph.nodes.values()) {
    if (node.kind !== 'state') {
      node.w = 64;
      node.h = 26;
    } else if (node.children) {
      node.layouts = node.children.map((child) => layout(child));
      const inner = node.layouts.reduce((sum, l) => sum + l.width, 0) + GAP_X * Math.max(0, node.layouts.length - 1);
      const innerH = Math.max(60, ...node.layouts.map((l) => l.height));
      node.w = Math.max(inner + 2 * PAD, textWidth(node.name) + 150, 220);
      node.h = HEAD + innerH + PAD;
    } else {
      node.w = Math.min(260, Math.max(130, textWidth(node.name) + 44));
      node.h = NODE_H;
    }
  }
}

/** Layers, order and coordinates for a graph; returns {width, height} and sets node.x/y. */
export function layout(graph) {
  measure(graph);
  const ids = [...graph.nodes.keys()];
  const out = new Map(ids.map((id) => [id, []]));
  const inc = new Map(ids.map((id) => [id, []]));
  // Back edges (loops: a Choice going back to an earlier state) are found by a DFS from Start
  // and left out of the layering; they are drawn around the side.
  const color = new Map();
  const order = [];
  const adj = new Map(ids.map((id) => [id, []]));
  for (const e of graph.edges) adj.get(e.from).push(e);
  const visit = (root) => {
    const stack = [[root, 0]];
    color.set(root, 1);
    order.push(root);
    while (stack.length) {
      const top = stack[stack.length - 1];
      const list = adj.get(top[0]);
      if (top[1] >= list.length) {
        color.set(top[0], 2);
        stack.pop();
        continue;
      }
      const e = list[top[1]++];
      const c = color.get(e.to) || 0;
      if (c === 1) {
        e.back = true;
      } else {
        e.back = false;
        if (c === 0) {
          color.set(e.to, 1);
          order.push(e.to);
          stack.push([e.to, 0]);
        }
      }
    }
  };
  visit(graph.startId);
  for (const id of ids) if (!color.get(id) && id !== graph.endId) visit(id);
  if (graph.nodes.has(graph.endId) && !color.get(graph.endId)) visit(graph.endId);
  for (const e of graph.edges) {
    if (e.back) continue;
    out.get(e.from).push(e.to);
    inc.get(e.to).push(e.from);
  }
  // Longest path from the roots, in topological order (Kahn).
  const layer = new Map();
  const indeg = new Map(ids.map((id) => [id, inc.get(id).length]));
  const queue = order.filter((id) => indeg.get(id) === 0);
  for (const id of queue) layer.set(id, 0);
  for (let i = 0; i < queue.length; i++) {
    const id = queue[i];
    for (const to of out.get(id)) {
      layer.set(to, Math.max(layer.get(to) || 0, layer.get(id) + 1));
      indeg.set(to, indeg.get(to) - 1);
      if (indeg.get(to) === 0) queue.push(to);
    }
  }
  let maxLayer = 0;
  for (const id of ids) if (id !== graph.endId) maxLayer = Math.max(maxLayer, layer.get(id) || 0);
  if (graph.nodes.has(graph.endId)) layer.set(graph.endId, maxLayer + 1);
  const layers = [];
  for (const id of order) {
    const l = layer.get(id) || 0;
    (layers[l] ||= []).push(id);
  }
  for (let i = 0; i < layers.length; i++) layers[i] ||= [];
  // An edge across several layers gets a dummy node in each layer between (Sugiyama): the
  // dummies take part in ordering and placement, so the edge is routed beside the boxes of
  // the layers it crosses instead of through them.
  let dummies = 0;
  for (const e of graph.edges) {
    if (e.back) continue;
    const from = layer.get(e.from) || 0;
    const to = layer.get(e.to) || 0;
    e.via = [];
    if (to - from <= 1) continue;
    out.set(e.from, out.get(e.from).filter((x) => x !== e.to));
    inc.set(e.to, inc.get(e.to).filter((x) => x !== e.from));
    let prev = e.from;
    for (let l = from + 1; l < to; l++) {
      const id = `${graph.prefix}#dummy${dummies++}`;
      graph.nodes.set(id, { id, kind: 'dummy', w: 12, h: 0 });
      out.set(id, []);
      inc.set(id, [prev]);
      out.get(prev).push(id);
      layers[l].push(id);
      layer.set(id, l);
      e.via.push(id);
      prev = id;
    }
    out.get(prev).push(e.to);
    inc.get(e.to).push(prev);
  }
  // Barycentre sweeps: order each layer by the mean position of its neighbours.
  const pos = new Map();
  const index = () => layers.forEach((ls) => ls.forEach((id, i) => pos.set(id, i)));
  index();
  const bary = (id, neighbours) => {
    const list = neighbours.get(id);
    if (!list.length) return pos.get(id);
    return list.reduce((sum, n) => sum + pos.get(n), 0) / list.length;
  };
  for (let pass = 0; pass < 4; pass++) {
    const down = pass % 2 === 0;
    const seq = down ? layers.slice(1) : layers.slice(0, -1).reverse();
    for (const ls of seq) {
      const keys = new Map(ls.map((id) => [id, bary(id, down ? inc : out)]));
      ls.sort((a, b) => keys.get(a) - keys.get(b) || pos.get(a) - pos.get(b));
      ls.forEach((id, i) => pos.set(id, i));
    }
  }
  // Coordinates: each node towards the mean centre of its predecessors, without overlaps.
  let y = PAD;
  const node = (id) => graph.nodes.get(id);
  for (const ls of layers) {
    const height = Math.max(0, ...ls.map((id) => node(id).h));
    const want = ls.map((id) => {
      const preds = inc.get(id).filter((p) => node(p).x !== undefined);
      if (!preds.length) return null;
      return preds.reduce((sum, p) => sum + node(p).x + node(p).w / 2, 0) / preds.length;
    });
    // Left to right without overlaps, then the whole layer shifted so that, on average,
    // nodes sit under their predecessors (a fan-out is centred under its source).
    let x = -Infinity;
    let drift = 0;
    let wanted = 0;
    ls.forEach((id, i) => {
      const n = node(id);
      const target = want[i] === null ? (x === -Infinity ? 0 : x) : want[i] - n.w / 2;
      n.x = x === -Infinity ? target : Math.max(x, target);
      if (want[i] !== null) {
        drift += n.x - target;
        wanted++;
      }
      x = n.x + n.w + (n.kind === 'dummy' ? GAP_X / 2 : GAP_X);
      n.y = y + (height - n.h) / 2;
      n.top = y;
      n.bottom = y + height;
    });
    if (wanted) for (const id of ls) node(id).x -= drift / wanted;
    y += height + GAP_Y;
  }
  let minX = Infinity;
  let maxX = -Infinity;
  for (const n of graph.nodes.values()) {
    minX = Math.min(minX, n.x);
    maxX = Math.max(maxX, n.x + n.w);
  }
  for (const n of graph.nodes.values()) n.x += PAD - minX;
  graph.width = maxX - minX + 2 * PAD + 40;  // room for loop edges on the right
  graph.height = y - GAP_Y + PAD;
  graph.layers = layers;
  return graph;
}

function statusOf(states, node) {
  const info = states && states[node.id];
  return (info && info.status) || (states ? 'not_reached' : null);
}

function edgePath(a, b, e, graph, loopSlot) {
  if (e.back) {
    const x = graph.width - 12 - loopSlot * 6;
    const y1 = a.y + a.h / 2;
    const y2 = b.y + b.h / 2;
    return { d: `M${a.x + a.w},${y1} H${x} V${y2} H${b.x + b.w}`, lx: x - 4, ly: (y1 + y2) / 2 };
  }
  const x1 = a.x + a.w / 2 + (e.offset || 0);
  const y1 = a.y + a.h;
  const x2 = b.x + b.w / 2;
  const y2 = b.y;
  const curve = (xa, ya, xb, yb) => {
    const dy = Math.max(12, (yb - ya) / 2);
    return ` C${xa},${ya + dy} ${xb},${yb - dy} ${xb},${yb}`;
  };
  let d = `M${x1},${y1}`;
  let px = x1;
  let py = y1;
  for (const id of e.via || []) {
    const n = graph.nodes.get(id);
    const cx = n.x + n.w / 2;
    d += curve(px, py, cx, n.top) + ` L${cx},${n.bottom}`;
    px = cx;
    py = n.bottom;
  }
  d += curve(px, py, x2, y2);
  const first = e.via && e.via.length ? graph.nodes.get(e.via[0]) : null;
  return {
    d,
    lx: first ? (x1 + first.x + first.w / 2) / 2 : (x1 + x2) / 2,
    ly: first ? (y1 + first.top) / 2 : (y1 + y2) / 2,
  };
}

function iterationSummary(info) {
  const it = info && info.iterations;
  if (!it) return null;
  const parts = [`${Number(it.total || 0).toLocaleString('en-US')} iterations`];
  if (it.succeeded) parts.push(`✓ ${Number(it.succeeded).toLocaleString('en-US')}`);
  if (it.failed) parts.push(`✗ ${Number(it.failed).toLocaleString('en-US')} failed`);
  if (it.running) parts.push(`● ${Number(it.running).toLocaleString('en-US')} running`);
  if (it.aborted) parts.push(`■ ${Number(it.aborted).toLocaleString('en-US')} aborted`);
  return parts.join(' · ');
}

function truncate(text, width, size = 1) {
  const max = Math.max(3, Math.floor(width / (CHAR_W * size)));
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function drawGraph(graph, ctx, parent, ox, oy) {
  const root = s('g', { transform: `translate(${ox},${oy})` });
  parent.append(root);
  const edgeLayer = s('g', { class: 'edges' });
  const labelLayer = s('g', { class: 'edge-labels' });
  const nodeLayer = s('g', { class: 'nodes' });
  root.append(edgeLayer, nodeLayer, labelLayer);
  // Spread the starts of several edges leaving one node.
  const byFrom = new Map();
  for (const e of graph.edges) if (!e.back) (byFrom.get(e.from) || byFrom.set(e.from, []).get(e.from)).push(e);
  for (const list of byFrom.values()) {
    const n = graph.nodes.get(list[0].from);
    const toward = (e) => graph.nodes.get(e.via && e.via.length ? e.via[0] : e.to);
    list.sort((p, q) => toward(p).x - toward(q).x);
    const span = Math.min(n.w - 20, 18 * (list.length - 1));
    list.forEach((e, i) => { e.offset = list.length > 1 ? -span / 2 + (span * i) / (list.length - 1) : 0; });
  }
  let loops = 0;
  for (const e of graph.edges) {
    const a = graph.nodes.get(e.from);
    const b = graph.nodes.get(e.to);
    const p = edgePath(a, b, e, graph, e.back ? loops++ : 0);
    const taken = ctx.taken ? ctx.taken.get(takenKey(e.from, e.to, e.kind)) : undefined;
    edgeLayer.append(s('path', {
      d: p.d, class: `edge e-${e.kind}${e.back ? ' back' : ''}${taken ? ' taken' : ''}`,
      'marker-end': `url(#${ctx.id}-${taken ? 'taken' : 'arrow'})`,
      'data-from': e.from, 'data-to': e.to, 'data-taken': taken || null,
    }, taken ? s('title', {}, `Taken ${taken} time${taken === 1 ? '' : 's'}`) : null));
    if (e.label) {
      const text = truncate(e.label, 170, 0.85);
      const w = textWidth(text, 0.85) + 8;
      labelLayer.append(s('g', { class: `edge-label e-${e.kind}`, transform: `translate(${p.lx - w / 2},${p.ly - 9})` },
        s('rect', { width: w, height: 17, rx: 3 }),
        s('text', { x: 4, y: 12.5 }, text),
        s('title', {}, e.label)));
    }
  }
  for (const ls of graph.layers) {
    for (const id of ls) {
      const n = graph.nodes.get(id);
      if (n.kind === 'dummy') continue;
      if (n.kind === 'start' || n.kind === 'end') {
        nodeLayer.append(s('g', { class: `terminal ${n.kind}`, transform: `translate(${n.x},${n.y})` },
          s('rect', { width: n.w, height: n.h, rx: n.h / 2 }),
          s('text', { x: n.w / 2, y: n.h / 2 + 4.5, 'text-anchor': 'middle' }, n.name)));
        continue;
      }
      drawNode(n, ctx, nodeLayer);
    }
  }
}

function drawNode(n, ctx, layer) {
  const status = statusOf(ctx.states, n);
  const info = ctx.states && ctx.states[n.id];
  const cls = `node t-${n.type.toLowerCase()}${status ? ` st-${status}` : ''}${n.children ? ' group' : ''}`;
  const label = `${n.name}, ${n.type} state${status ? `, ${LABEL[status] || status}` : ''}${info && info.iterations ? `, ${iterationSummary(info)}` : ''}`;
  const g = s('g', {
    class: cls, transform: `translate(${n.x},${n.y})`, tabindex: '0', role: 'button',
    'aria-label': label, 'data-path': n.id, 'data-status': status || '',
  });
  ctx.nodeEls.set(n.id, g);
  const icon = status ? ICON[status] : '';
  if (n.children) {
    g.append(s('rect', { class: 'frame', width: n.w, height: n.h, rx: 8 }));
    if (status === 'failed') g.append(s('rect', { class: 'hatch', width: n.w, height: HEAD - 4, rx: 8 }));
    g.append(
      s('text', { class: 'name', x: 12, y: 19 }, truncate(`${n.type}: ${n.name}`, n.w - 60)),
      s('text', { class: 'icon', x: n.w - 12, y: 20, 'text-anchor': 'end', 'aria-hidden': 'true' }, icon));
    const summary = iterationSummary(info);
    if (summary) g.append(s('text', { class: 'iterations', x: 12, y: 36 }, truncate(summary, n.w - 24, 0.85)));
    else if (n.type === 'Parallel') g.append(s('text', { class: 'type', x: 12, y: 36 }, `${n.children.length} branches`));
    let x = PAD;
    const inner = s('g', { class: 'inner' });
    g.append(inner);
    n.layouts.forEach((child, i) => {
      if (n.type === 'Parallel') {
        inner.append(s('rect', { class: 'branch', x: x - 6, y: HEAD - 6, width: child.width + 12, height: child.height + 10, rx: 6 }),
          s('text', { class: 'type', x: x, y: HEAD + 6 }, `Branch ${i + 1}`));
      }
      drawGraph(child, ctx, inner, x, HEAD);
      x += child.width + GAP_X;
    });
  } else {
    g.append(s('rect', { class: 'box', width: n.w, height: n.h, rx: 6 }));
    if (status === 'failed') g.append(s('rect', { class: 'hatch', width: n.w, height: n.h, rx: 6 }));
    g.append(
      s('text', { class: 'name', x: 10, y: 19 }, truncate(n.name, n.w - 34)),
      s('text', { class: 'type', x: 10, y: 36 }, typeLine(n, info)),
      s('text', { class: 'icon', x: n.w - 10, y: 20, 'text-anchor': 'end', 'aria-hidden': 'true' }, icon));
  }
  g.append(s('title', {}, label));
  layer.append(g);
}

function typeLine(n, info) {
  let text = n.type;
  if (info) {
    if (info.retries) text += ` · ${info.retries} retr${info.retries === 1 ? 'y' : 'ies'}`;
    if (info.entered > 1) text += ` · ×${info.entered}`;
  }
  return truncate(text, n.w - 20, 0.85);
}

let graphIds = 0;

// The transitions of GET /executions/{id}/states say next, catch or fail; a drawn edge is
// next, choice, default, catch or fail. Choice rules and Default that lead to the same
// state are one transition in the history (which rule matched is not recorded), so all of
// them are marked.
function takenKey(from, to, kind) {
  const family = kind === 'catch' || kind === 'fail' ? kind : 'next';
  return `${from}\n${to}\n${family}`;
}

/**
 * Render a definition as SVG. `states` (optional) is the /states map: nodes are coloured by
 * outcome. `onSelect(path)` is called on click, Enter or Space on a state.
 * Returns {el, select(path), nodes}.
 */
export function renderGraph(definition, { states = null, transitions = null, onSelect = null } = {}) {
  const graph = layout(buildGraph(definition));
  const id = `g${++graphIds}`;
  const taken = transitions ? new Map(transitions.map((t) => [takenKey(t.from, t.to, t.kind), t.count])) : null;
  const ctx = { id, states, taken, nodeEls: new Map() };
  const svg = s('svg', {
    class: 'graph', width: graph.width, height: graph.height,
    viewBox: `0 0 ${graph.width} ${graph.height}`, role: 'group', 'aria-label': 'State machine graph',
  });
  svg.append(s('defs', {},
    s('marker', { id: `${id}-arrow`, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
      s('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrow' })),
    s('marker', { id: `${id}-taken`, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 4.5, markerHeight: 4.5, orient: 'auto-start-reverse' },
      s('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrow taken' })),
    s('pattern', { id: `${id}-hatch`, width: 8, height: 8, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)' },
      s('line', { x1: 0, y1: 0, x2: 0, y2: 8, class: 'hatch-line' }))));
  drawGraph(graph, ctx, svg, 0, 0);
  for (const el of svg.querySelectorAll('.hatch')) el.setAttribute('fill', `url(#${id}-hatch)`);
  let selected = null;
  const select = (path) => {
    if (selected) selected.classList.remove('selected');
    selected = ctx.nodeEls.get(path) || null;
    if (selected) selected.classList.add('selected');
  };
  if (onSelect) {
    const fire = (ev) => {
      const g = ev.target.closest('g.node');
      if (!g) return;
      ev.stopPropagation();
      select(g.dataset.path);
      onSelect(g.dataset.path);
    };
    svg.addEventListener('click', fire);
    svg.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' || ev.key === ' ') {
        ev.preventDefault();
        fire(ev);
      }
    });
  }
  const zoomable = h('div', { class: 'graph-wrap' }, svg);
  let scale = 1;
  const setScale = (k) => {
    scale = Math.min(2, Math.max(0.2, k));
    svg.setAttribute('width', graph.width * scale);
    svg.setAttribute('height', graph.height * scale);
  };
  const tools = h('div', { class: 'graph-tools', role: 'toolbar', 'aria-label': 'Zoom' },
    h('button', { type: 'button', class: 'small', onclick: () => setScale(scale * 1.25), 'aria-label': 'Zoom in' }, '+'),
    h('button', { type: 'button', class: 'small', onclick: () => setScale(scale / 1.25), 'aria-label': 'Zoom out' }, '−'),
    h('button', { type: 'button', class: 'small', onclick: () => setScale(Math.min(1, (zoomable.clientWidth - 8) / graph.width)) }, 'Fit'),
    h('button', { type: 'button', class: 'small', onclick: () => setScale(1) }, '100%'));
  const el = h('div', { class: 'graph-panel' }, tools, zoomable);
  return { el, select, nodes: ctx.nodeEls, graph };
}

/** The legend of node colours, with the icon and pattern each status also has, and of the
 * edges an execution took. */
export function legend() {
  return h('ul', { class: 'legend', 'aria-label': 'Legend' },
    STATUSES.map(([key, label, icon]) => h('li', {},
      h('span', { class: `swatch st-${key}`, 'aria-hidden': 'true' }, icon), ' ', label)),
    h('li', {}, h('span', { class: 'swatch-edge taken', 'aria-hidden': 'true' }), ' Transition taken (bold)'));
}
