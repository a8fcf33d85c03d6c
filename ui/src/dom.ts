// Small DOM helpers: elements are built with textContent only, so nothing the
// relay returns (MACs, remotes, names) is ever parsed as HTML.

type Child = Node | string | null | undefined | false;

/** An element with attributes (strings; `on*` functions become listeners) and children. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K, attributes: Record<string, string | boolean | ((event: Event) => void)> = {}, ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (typeof value === "function") element.addEventListener(name.slice(2), value);
    else if (value === true) element.setAttribute(name, "");
    else if (value !== false) element.setAttribute(name, value);
  }
  append(element, children);
  return element;
}

/** Appends children, skipping empty ones. */
export function append(parent: Node, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
  }
}

/** Replaces an element's children. */
export function replaceChildren(parent: Element, ...children: Child[]): void {
  parent.replaceChildren();
  append(parent, children);
}

/** A table with a header row and body rows; cells whose column is numeric align right. */
export function table(headers: string[], rows: Array<Array<string | Node>>, numeric: ReadonlySet<number> = new Set()): HTMLTableElement {
  return el("table", {},
    el("thead", {}, el("tr", {}, ...headers.map((title, i) => el("th", numeric.has(i) ? { class: "num" } : {}, title)))),
    el("tbody", {}, ...rows.map((cells) => el("tr", {}, ...cells.map((cell, i) => el("td", numeric.has(i) ? { class: "num" } : {}, cell))))),
  );
}

/** 1234567 → "1.23 M"; for rates and byte counts. */
export function compact(value: number, digits = 2): string {
  const units = ["", " k", " M", " G", " T"];
  let scaled = value;
  let unit = 0;
  while (Math.abs(scaled) >= 1000 && unit < units.length - 1) {
    scaled /= 1000;
    unit++;
  }
  return unit === 0 ? String(Math.round(scaled * 100) / 100) : `${scaled.toFixed(digits)}${units[unit]}`;
}
