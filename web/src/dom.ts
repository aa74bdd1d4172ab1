/**
 * A tiny DOM helper: `h(tag, attrs, ...children)` makes an HTML element, `s(...)` an SVG one. Attributes named
 * `on<event>` become listeners; `false`, `null` and `undefined` leave an attribute out. There is no `style`
 * attribute: the page's Content-Security-Policy refuses inline styles, so looks come from classes (and CSSOM).
 */

export type AttrValue = string | number | boolean | null | undefined
export type Listener = (event: Event) => void
export type Attrs = Record<string, AttrValue | Listener>
export type Child = Node | string | number | null | undefined | false | readonly Child[]

const svgNs = 'http://www.w3.org/2000/svg'

function applyAttrs(element: Element, attrs: Attrs | null | undefined): void {
  if (attrs === null || attrs === undefined) return
  for (const [name, value] of Object.entries(attrs)) {
    if (name === 'style') throw new Error('h(): inline styles are refused by the Content-Security-Policy; use a class')
    if (typeof value === 'function') {
      element.addEventListener(name.slice(2).toLowerCase(), value)
    } else if (value === true) {
      element.setAttribute(name, '')
    } else if (value !== false && value !== null && value !== undefined) {
      element.setAttribute(name, String(value))
    }
  }
}

function appendChildren(parent: Node, children: readonly Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue
    if (Array.isArray(child)) appendChildren(parent, child as readonly Child[])
    else if (child instanceof Node) parent.appendChild(child)
    else parent.appendChild(document.createTextNode(String(child)))
  }
}

/** An HTML element with its attributes and children. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs?: Attrs | null, ...children: Child[]): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag)
  applyAttrs(element, attrs)
  appendChildren(element, children)
  return element
}

/** An SVG element with its attributes and children. */
export function s<K extends keyof SVGElementTagNameMap>(tag: K, attrs?: Attrs | null, ...children: Child[]): SVGElementTagNameMap[K] {
  const element = document.createElementNS(svgNs, tag)
  applyAttrs(element, attrs)
  appendChildren(element, children)
  return element
}

/** Replaces everything in `parent` with `children`. */
export function replaceChildren(parent: Element, ...children: Child[]): void {
  parent.textContent = ''
  appendChildren(parent, children)
}
