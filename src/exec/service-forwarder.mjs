// The path into a served program's sandbox (service-netns.ts starts it under nsenter, in the sandbox's network
// namespace and nothing else of it). For each request from its parent over the IPC channel it opens a TCP connection
// to 127.0.0.1:<port> there and hands the connected socket itself back to the parent: the parent then reads and
// writes the server's connection directly, and this process copies no byte. It ends with its parent.
import { connect } from 'node:net'

const port = Number(process.argv[2])
/** A server whose backlog is full drops the connection attempt; the parent is told rather than left waiting. */
const connectTimeoutMs = 10_000

if (typeof process.send !== 'function' || !Number.isInteger(port) || port < 1 || port > 65_535) {
  process.stderr.write('usage: service-forwarder.mjs <port>, started with an IPC channel\n')
  process.exit(2)
}

const reply = (message, socket) => {
  if (!process.connected) {
    socket?.destroy()
    return
  }
  process.send(message, socket, (error) => {
    if (error) socket?.destroy()
  })
}

process.on('message', (message) => {
  const id = message?.id
  if (message?.kind !== 'connect' || !Number.isInteger(id)) return
  const socket = connect({ host: '127.0.0.1', port })
  // Paused before it connects, this socket never starts reading: the server's first bytes stay for the parent.
  socket.pause()
  const timer = setTimeout(() => socket.destroy(Object.assign(new Error('connect timed out'), { code: 'ETIMEDOUT' })), connectTimeoutMs)
  socket.once('connect', () => {
    clearTimeout(timer)
    reply({ kind: 'connected', id }, socket)
  })
  socket.once('error', (error) => {
    clearTimeout(timer)
    socket.destroy()
    reply({ kind: 'failed', id, code: error.code ?? 'EIO', message: error.message })
  })
})
process.on('disconnect', () => process.exit(0))
reply({ kind: 'ready' })
