/** Reading files the user picks (as base64 for the API) and saving what the API returns (as a download). */

const chunkSize = 0x8000

/** The bytes as base64. */
export function toBase64(bytes: Uint8Array): string {
  let binary = ''
  for (let i = 0; i < bytes.length; i += chunkSize) binary += String.fromCharCode(...bytes.subarray(i, i + chunkSize))
  return btoa(binary)
}

/** base64 as bytes. */
export function fromBase64(text: string): Uint8Array<ArrayBuffer> {
  const binary = atob(text)
  const bytes = new Uint8Array(binary.length)
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i)
  return bytes
}

/** A file's content as base64. */
export async function fileToBase64(file: File): Promise<string> {
  return toBase64(new Uint8Array(await file.arrayBuffer()))
}

/** The path an input is sent under: its path inside the picked folder (the folder's own name left out), else its name. */
export function inputPath(file: File): string {
  const parts = file.webkitRelativePath.split('/').filter((part) => part !== '')
  return parts.length > 1 ? parts.slice(1).join('/') : file.name
}

/** Offers `bytes` to the user as a file called `name`. */
export function download(bytes: Uint8Array<ArrayBuffer>, name: string): void {
  const url = URL.createObjectURL(new Blob([bytes], { type: 'application/octet-stream' }))
  const link = document.createElement('a')
  link.href = url
  link.download = name
  link.hidden = true
  document.body.appendChild(link)
  link.click()
  link.remove()
  setTimeout(() => URL.revokeObjectURL(url), 60_000)
}
