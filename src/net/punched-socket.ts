/**
 * A connected TCP socket as a libp2p MultiaddrConnection, for sockets libp2p's TCP transport did not open itself (a
 * hole punch's simultaneous open, see hole-punch.ts). The upgrader then runs noise and yamux over it as over any dial.
 */
import type { Socket } from 'node:net'
import type { AbortOptions, Logger } from '@libp2p/interface'
import { AbstractMultiaddrConnection } from '@libp2p/utils'
import type { SendResult } from '@libp2p/utils'
import type { Multiaddr } from '@multiformats/multiaddr'

/** How long a punched connection may carry nothing before it is closed (as libp2p's TCP transport does). */
const inactivityTimeoutMs = 2 * 60_000

export class PunchedSocketConnection extends AbstractMultiaddrConnection {
  private readonly socket: Socket

  /**
   * `initiator`: the side that runs noise and yamux as the dialler. Both sides connected out, but yamux needs one
   * client and one server, and takes the role from the direction.
   */
  constructor(init: { socket: Socket; remoteAddr: Multiaddr; log: Logger; initiator: boolean }) {
    super({ remoteAddr: init.remoteAddr, direction: init.initiator ? 'outbound' : 'inbound', log: init.log })
    this.socket = init.socket
    const socket = init.socket
    socket.setNoDelay(true)
    socket.setKeepAlive(true)
    socket.on('data', (chunk: Buffer) => this.onData(chunk))
    socket.on('error', (error) => this.abort(error))
    socket.setTimeout(inactivityTimeoutMs)
    socket.once('timeout', () => this.abort(new Error(`no traffic for ${inactivityTimeoutMs} ms`)))
    // The remote's FIN: Node answers with its own (no half-open sockets) and then emits close.
    socket.once('end', () => this.onTransportClosed())
    socket.once('close', (hadError) => (hadError ? this.abort(new Error('TCP transmission error')) : this.onTransportClosed()))
    socket.on('drain', () => this.safeDispatchEvent('drain'))
  }

  sendData(data: Parameters<AbstractMultiaddrConnection['sendData']>[0]): SendResult {
    let sentBytes = 0
    let canSendMore = true
    for (const chunk of data) {
      sentBytes += chunk.byteLength
      canSendMore = this.socket.write(chunk)
      if (!canSendMore) break
    }
    return { sentBytes, canSendMore }
  }

  async sendClose(options?: AbortOptions): Promise<void> {
    if (this.socket.destroyed) return
    const closed = new Promise<void>((resolve, reject) => {
      this.socket.once('close', () => resolve())
      options?.signal?.addEventListener('abort', () => reject(options.signal?.reason as Error), { once: true })
    })
    this.socket.destroySoon()
    await closed
  }

  sendReset(): void {
    if (this.socket.writableEnded) this.socket.destroy()
    else this.socket.resetAndDestroy()
  }

  sendPause(): void {
    this.socket.pause()
  }

  sendResume(): void {
    this.socket.resume()
  }
}
