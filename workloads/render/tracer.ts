// A small deterministic ray tracer: spheres on a checkered ground plane under a sky gradient, lit by a sun.
// Diffuse + Blinn-Phong specular, hard shadows, reflections with a Schlick Fresnel term, distance fog, and a fixed
// 4-sample rotated-grid pattern per pixel. Every pixel is a pure function of (width, height, px, py), in f64 with
// AssemblyScript's own software Math (no host imports), so tiles stitch into the full image bit for bit.
// No allocation in the hot path: the stub runtime never frees, so results travel in module-level globals.

const EPSILON: f64 = 1e-6
const MAX_BOUNCES: i32 = 5
const FOG_DENSITY: f64 = 0.012

// Sun direction (towards the light), normalized at start.
const SUN_LEN: f64 = Math.sqrt(0.55 * 0.55 + 0.9 * 0.9 + 0.45 * 0.45)
const SUN_X: f64 = -0.55 / SUN_LEN
const SUN_Y: f64 = 0.9 / SUN_LEN
const SUN_Z: f64 = -0.45 / SUN_LEN
const AMBIENT: f64 = 0.18

// Spheres: centre x, y, z, radius, colour r, g, b, reflectivity at normal incidence, shininess, specular strength.
const STRIDE = 10
const SPHERES: StaticArray<f64> = [
  0.0, 1.0, 0.0, 1.0, 0.95, 0.95, 0.97, 0.8, 200.0, 0.9, // mirror
  -2.15, 0.7, 0.55, 0.7, 0.85, 0.12, 0.08, 0.06, 60.0, 0.6, // red
  1.95, 0.6, 0.75, 0.6, 0.1, 0.3, 0.85, 0.12, 90.0, 0.7, // blue
  0.85, 0.35, -1.5, 0.35, 1.0, 0.72, 0.2, 0.35, 120.0, 0.8, // gold
  -0.95, 0.3, -1.7, 0.3, 0.2, 0.72, 0.3, 0.05, 40.0, 0.4, // green
  -0.2, 0.22, -2.45, 0.22, 0.9, 0.9, 0.9, 0.02, 20.0, 0.3, // white
]
const SPHERE_COUNT: i32 = SPHERES.length / STRIDE
const PLANE: i32 = -1
const NOTHING: i32 = -2

// Camera.
const EYE_X: f64 = 0.0
const EYE_Y: f64 = 1.7
const EYE_Z: f64 = -6.2
const LOOK_X: f64 = 0.0
const LOOK_Y: f64 = 0.6
const LOOK_Z: f64 = 0.0
const TAN_HALF_FOV: f64 = 0.4 // vertical field of view ~43.6 degrees

// Sub-pixel offsets of the 4 samples (rotated grid).
const SAMPLES: StaticArray<f64> = [0.375, 0.125, 0.875, 0.375, 0.125, 0.625, 0.625, 0.875]
export const SAMPLES_PER_PIXEL: i32 = 4

// Results of intersect().
let hitT: f64 = 0
let hitId: i32 = NOTHING
// Colour accumulated by trace().
let outR: f64 = 0
let outG: f64 = 0
let outB: f64 = 0
// Camera basis, set by setCamera().
let fwdX: f64 = 0, fwdY: f64 = 0, fwdZ: f64 = 0
let rightX: f64 = 0, rightY: f64 = 0, rightZ: f64 = 0
let upX: f64 = 0, upY: f64 = 0, upZ: f64 = 0

function setCamera(): void {
  let x = LOOK_X - EYE_X, y = LOOK_Y - EYE_Y, z = LOOK_Z - EYE_Z
  let inv = 1.0 / Math.sqrt(x * x + y * y + z * z)
  fwdX = x * inv; fwdY = y * inv; fwdZ = z * inv
  // right = normalize(worldUp x forward), worldUp = (0, 1, 0)
  x = fwdZ; y = 0.0; z = -fwdX
  inv = 1.0 / Math.sqrt(x * x + z * z)
  rightX = x * inv; rightY = y; rightZ = z * inv
  // up = forward x right
  upX = fwdY * rightZ - fwdZ * rightY
  upY = fwdZ * rightX - fwdX * rightZ
  upZ = fwdX * rightY - fwdY * rightX
}
setCamera()

/** Nearest hit along the ray within maxT: sets hitT and hitId; false when nothing is hit. */
function intersect(ox: f64, oy: f64, oz: f64, dx: f64, dy: f64, dz: f64, maxT: f64): bool {
  hitT = maxT
  hitId = NOTHING
  for (let i = 0; i < SPHERE_COUNT; i++) {
    const base = i * STRIDE
    const cx = ox - unchecked(SPHERES[base]), cy = oy - unchecked(SPHERES[base + 1]), cz = oz - unchecked(SPHERES[base + 2])
    const r = unchecked(SPHERES[base + 3])
    const b = cx * dx + cy * dy + cz * dz
    const c = cx * cx + cy * cy + cz * cz - r * r
    const disc = b * b - c
    if (disc < 0) continue
    const s = Math.sqrt(disc)
    let t = -b - s
    if (t < EPSILON) t = -b + s
    if (t > EPSILON && t < hitT) {
      hitT = t
      hitId = i
    }
  }
  if (dy < -EPSILON) {
    const t = -oy / dy
    if (t > EPSILON && t < hitT) {
      hitT = t
      hitId = PLANE
    }
  }
  return hitId != NOTHING
}

function skyInto(dx: f64, dy: f64, dz: f64, weightR: f64, weightG: f64, weightB: f64): void {
  const up = dy > 0 ? dy : 0.0
  const k = Math.sqrt(up) // a gentle curve: pale horizon, deep zenith
  let r = 0.86 + (0.22 - 0.86) * k
  let g = 0.9 + (0.45 - 0.9) * k
  let b = 0.98 + (0.85 - 0.98) * k
  const sun = dx * SUN_X + dy * SUN_Y + dz * SUN_Z
  if (sun > 0) {
    const glow = Math.pow(sun, 64.0) * 0.6 + Math.pow(sun, 2048.0) * 6.0
    r += glow
    g += glow * 0.9
    b += glow * 0.7
  }
  outR += weightR * r
  outG += weightG * g
  outB += weightB * b
}

/** Follows one camera ray through its reflections and adds its colour to outR/G/B. */
function trace(ox: f64, oy: f64, oz: f64, dx: f64, dy: f64, dz: f64): void {
  let weightR: f64 = 1, weightG: f64 = 1, weightB: f64 = 1
  for (let bounce = 0; bounce < MAX_BOUNCES; bounce++) {
    if (!intersect(ox, oy, oz, dx, dy, dz, Infinity)) {
      skyInto(dx, dy, dz, weightR, weightG, weightB)
      return
    }
    const t = hitT
    const id = hitId
    const px = ox + dx * t, py = oy + dy * t, pz = oz + dz * t
    let nx: f64, ny: f64, nz: f64
    let baseR: f64, baseG: f64, baseB: f64
    let reflectivity: f64, shininess: f64, specular: f64
    if (id == PLANE) {
      nx = 0; ny = 1; nz = 0
      const check = (<i64>Math.floor(px * 0.8) + <i64>Math.floor(pz * 0.8)) & 1
      if (check == 0) {
        baseR = 0.92; baseG = 0.9; baseB = 0.84
      } else {
        baseR = 0.2; baseG = 0.23; baseB = 0.28
      }
      reflectivity = 0.04; shininess = 30; specular = 0.15
    } else {
      const base = id * STRIDE
      const invR = 1.0 / unchecked(SPHERES[base + 3])
      nx = (px - unchecked(SPHERES[base])) * invR
      ny = (py - unchecked(SPHERES[base + 1])) * invR
      nz = (pz - unchecked(SPHERES[base + 2])) * invR
      baseR = unchecked(SPHERES[base + 4]); baseG = unchecked(SPHERES[base + 5]); baseB = unchecked(SPHERES[base + 6])
      reflectivity = unchecked(SPHERES[base + 7]); shininess = unchecked(SPHERES[base + 8]); specular = unchecked(SPHERES[base + 9])
    }
    // Offset the origin of secondary rays off the surface to avoid self-hits ("shadow acne").
    const sx = px + nx * 1e-5, sy = py + ny * 1e-5, sz = pz + nz * 1e-5

    const lambert = nx * SUN_X + ny * SUN_Y + nz * SUN_Z
    const lit: f64 = lambert > 0 && !intersect(sx, sy, sz, SUN_X, SUN_Y, SUN_Z, Infinity) ? 1.0 : 0.0
    const diffuse = AMBIENT * (0.6 + 0.4 * ny) + (1.0 - AMBIENT) * (lambert > 0 ? lambert : 0.0) * lit
    // Blinn-Phong half vector between the light and the viewer.
    let hx = SUN_X - dx, hy = SUN_Y - dy, hz = SUN_Z - dz
    const hInv = 1.0 / Math.sqrt(hx * hx + hy * hy + hz * hz)
    const nh = (nx * hx + ny * hy + nz * hz) * hInv
    const highlight = nh > 0 && lit > 0 ? Math.pow(nh, shininess) * specular : 0.0

    // Schlick's Fresnel approximation: surfaces reflect more at grazing angles.
    let cosine = -(nx * dx + ny * dy + nz * dz)
    if (cosine < 0) cosine = 0
    const grazing = 1.0 - cosine
    const g2 = grazing * grazing
    const fresnel = reflectivity + (1.0 - reflectivity) * g2 * g2 * grazing
    const reflect = id == PLANE ? fresnel * 0.5 : fresnel
    const local = 1.0 - reflect

    // Distance fog blends far surfaces into the horizon colour, which also hides checkerboard aliasing.
    const fog = 1.0 - Math.exp(-t * FOG_DENSITY)
    const keep = 1.0 - fog
    outR += weightR * keep * (local * baseR * diffuse + highlight)
    outG += weightG * keep * (local * baseG * diffuse + highlight)
    outB += weightB * keep * (local * baseB * diffuse + highlight)
    skyInto(0.0, 0.0, 1.0, weightR * fog, weightG * fog, weightB * fog)

    const tint = id == PLANE ? 1.0 : 0.5 // metals tint their reflections a little
    weightR *= keep * reflect * (1.0 - tint + tint * baseR)
    weightG *= keep * reflect * (1.0 - tint + tint * baseG)
    weightB *= keep * reflect * (1.0 - tint + tint * baseB)
    if (weightR + weightG + weightB < 0.003) return

    const dn = 2.0 * (nx * dx + ny * dy + nz * dz)
    dx -= dn * nx
    dy -= dn * ny
    dz -= dn * nz
    ox = sx; oy = sy; oz = sz
  }
}

function toByte(value: f64): u8 {
  // A soft shoulder instead of clipping, then gamma 2.2.
  let v = value < 0 ? 0.0 : value
  v = v < 0.8 ? v : 0.8 + (v - 0.8) / (1.0 + (v - 0.8) * 5.0)
  if (v > 1.0) v = 1.0
  return <u8>Math.floor(Math.pow(v, 1.0 / 2.2) * 255.0 + 0.5)
}

/** Renders pixel (px, py) of a width x height image into out[0..2] as RGB8. */
export function renderPixel(width: i32, height: i32, px: i32, py: i32, out: usize): void {
  const aspect = <f64>width / <f64>height
  let r: f64 = 0, g: f64 = 0, b: f64 = 0
  for (let s = 0; s < SAMPLES_PER_PIXEL; s++) {
    const u = ((2.0 * (<f64>px + unchecked(SAMPLES[2 * s]))) / <f64>width - 1.0) * TAN_HALF_FOV * aspect
    const v = (1.0 - (2.0 * (<f64>py + unchecked(SAMPLES[2 * s + 1]))) / <f64>height) * TAN_HALF_FOV
    let dx = fwdX + rightX * u + upX * v
    let dy = fwdY + rightY * u + upY * v
    let dz = fwdZ + rightZ * u + upZ * v
    const inv = 1.0 / Math.sqrt(dx * dx + dy * dy + dz * dz)
    dx *= inv; dy *= inv; dz *= inv
    outR = 0; outG = 0; outB = 0
    trace(EYE_X, EYE_Y, EYE_Z, dx, dy, dz)
    r += outR; g += outG; b += outB
  }
  const scale = 1.0 / <f64>SAMPLES_PER_PIXEL
  store<u8>(out, toByte(r * scale))
  store<u8>(out + 1, toByte(g * scale))
  store<u8>(out + 2, toByte(b * scale))
}
