import assert from 'node:assert/strict'
import { once } from 'node:events'
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { after, before, describe, it } from 'node:test'
import { HearthError, isHearthError } from '../errors.ts'
import { dialDirect, listenDirect, type DirectJoin, type DirectListener, type DirectLimits } from './direct-link.ts'
import { LinkCutError, type FramedLink } from './link-frames.ts'

/** A TCP server on loopback whose connections `onConnection` handles; `connect()` opens one to it (a join). */
async function target(onConnection: (socket: Socket) => void): Promise<{ server: Server; join: DirectJoin; accepted: Socket[] }> {
  const accepted: Socket[] = []
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    accepted.push(socket)
    socket.on('error', () => {})
    onConnection(socket)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  const join: DirectJoin = () =>
    new Promise<Duplex>((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port, allowHalfOpen: true }, () => resolve(socket))
      socket.once('error', reject)
    })
  return { server, join, accepted }
}

/** Everything `socket` reads until its end; rejects on an error (a reset). */
function readAll(socket: Duplex): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.once('end', () => resolve(Buffer.concat(chunks).toString()))
    socket.once('error', reject)
  })
}

/** Resolves once the link ends, fails or closes. */
function over(socket: Duplex): Promise<void> {
  return new Promise((resolve) => {
    for (const event of ['end', 'error', 'close']) socket.once(event, () => resolve())
    socket.resume()
  })
}

function closed(socket: Duplex): Promise<{ error?: Error }> {
  return new Promise((resolve) => {
    if (socket.closed) return resolve(socket.errored === null ? {} : { error: socket.errored })
    let error: Error | undefined
    socket.once('error', (e: Error) => (error = e))
    socket.once('close', () => resolve(error === undefined ? {} : { error }))
    socket.resume()
  })
}

/** The link's `joined`, the join byte sent, its failure (a refusal) also heard on the link. */
function joinedOf(link: FramedLink): Promise<void> {
  link.on('error', () => {})
  return link.join().joined
}

const isCode = (code: string) => (error: unknown) => isHearthError(error) && error.code === code
const isRemote = (remoteCode: string) => (error: unknown) => isHearthError(error) && error.details?.refusedLink === true && error.details.remoteCode === remoteCode

describe('direct links', () => {
  let echo: Awaited<ReturnType<typeof target>>
  const listeners: DirectListener[] = []
  const listen = async (limits: Partial<DirectLimits> = {}, now?: () => number): Promise<DirectListener> => {
    const listener = await listenDirect({ host: '127.0.0.1', limits, ...(now === undefined ? {} : { now }) })
    listeners.push(listener)
    return listener
  }

  before(async () => {
    // Echoes what it reads, and ends when its reader ended: a half-close passes through both ways.
    echo = await target((socket) => socket.pipe(socket))
  })
  after(async () => {
    for (const listener of listeners) await listener.close()
    echo.server.close()
  })

  it('carries bytes both ways with the ticket granted, and a half-close each way', async () => {
    const listener = await listen()
    const grant = listener.grant('gateway', echo.join)
    assert.deepEqual(grant.hosts, ['127.0.0.1'])
    const socket = await dialDirect('127.0.0.1', grant.port, grant)
    const answer = readAll(socket)
    socket.write('hello, ')
    socket.end('direct link')
    assert.equal(await answer, 'hello, direct link')
    assert.equal((await closed(socket)).error, undefined)
  })

  it('keeps what the target sent before the first read (a server that speaks first)', async () => {
    const banner = await target((socket) => socket.end('220 ready\r\n'))
    try {
      const listener = await listen()
      const grant = listener.grant('gateway', banner.join)
      const socket = await dialDirect('127.0.0.1', grant.port, grant)
      assert.equal(await readAll(socket.join()), '220 ready\r\n')
    } finally {
      banner.server.close()
    }
  })

  it('lets nobody past the handshake without the ticket\'s key: a wrong key, an unknown ticket, an expired one', async () => {
    let clock = 1_000_000
    const listener = await listen({ ticketTtlMs: 60_000 }, () => clock)
    let joins = 0
    const counted: DirectJoin = () => {
      joins++
      return echo.join()
    }
    const grant = listener.grant('gateway', counted)
    const wrongKey = { ticket: grant.ticket, key: 'ab'.repeat(32) }
    await assert.rejects(dialDirect('127.0.0.1', grant.port, wrongKey), isCode('HEARTH_ERR_NET_DIAL'))
    await assert.rejects(dialDirect('127.0.0.1', grant.port, { ticket: 'cd'.repeat(16), key: grant.key }), isCode('HEARTH_ERR_NET_DIAL'))
    clock += 60_001
    await assert.rejects(dialDirect('127.0.0.1', grant.port, grant), isCode('HEARTH_ERR_NET_DIAL'))
    assert.equal(joins, 0)
    assert.ok(listener.stats().refusedHandshakes >= 3)
    // A new grant works, and a link made before its ticket expires goes on after.
    const fresh = listener.grant('gateway', counted)
    const socket = await dialDirect('127.0.0.1', fresh.port, fresh)
    clock += 120_000
    const answer = readAll(socket)
    socket.end('still here')
    assert.equal(await answer, 'still here')
    assert.equal(joins, 1)
  })

  it('passes on the responder\'s refusal, with its code, when the target cannot be reached', async () => {
    const listener = await listen()
    const grant = listener.grant('gateway', () => Promise.reject(new HearthError('HEARTH_ERR_SERVICE_NOT_HOSTED', 'no server for this activity', { hint: 'ask the owner' })))
    const link = await dialDirect('127.0.0.1', grant.port, grant)
    await assert.rejects(joinedOf(link), (error: unknown) => isRemote('HEARTH_ERR_SERVICE_NOT_HOSTED')(error) && (error as HearthError).hint === 'ask the owner')
    // The link fails with it too: whoever reads it learns nothing reached the target.
    assert.ok(isRemote('HEARTH_ERR_SERVICE_NOT_HOSTED')(link.errored ?? (await closed(link)).error))
    assert.equal(listener.stats().refusedJoins, 1)
    // A join that throws rather than rejects (the target ended after the ticket was granted): the same refusal.
    const throwing = listener.grant('gateway', () => {
      throw new HearthError('HEARTH_ERR_SERVICE_NOT_HOSTED', 'the replica ended')
    })
    await assert.rejects(joinedOf(await dialDirect('127.0.0.1', throwing.port, throwing)), isRemote('HEARTH_ERR_SERVICE_NOT_HOSTED'))
    assert.equal(listener.stats().refusedJoins, 2)
  })

  it('keeps a link spare, its target unreached, until asked to join, and refuses one unused for too long', async () => {
    const listener = await listen({ spareTimeoutMs: 300 })
    let joins = 0
    const counted: DirectJoin = () => {
      joins++
      return echo.join()
    }
    const grant = listener.grant('gateway', counted)
    const unused = await dialDirect('127.0.0.1', grant.port, grant)
    unused.on('error', () => {})
    await assert.rejects(unused.joined, isRemote('HEARTH_ERR_NET_TIMEOUT'))
    assert.equal(joins, 0, 'a spare never asked to join reached no target')
    // One asked in time is joined: the request behind its join byte reaches the target whole.
    const used = await dialDirect('127.0.0.1', grant.port, grant)
    const answer = readAll(used)
    used.end('asked in time')
    assert.equal(await answer, 'asked in time')
    assert.equal(joins, 1)
  })

  it('fails the opener\'s link, never ends it, when the target resets mid-response', async () => {
    // A response delimited by the connection's close alone, cut by its server: it must not pass as whole. The server
    // resets once the opener has read the first half (a reset with writes pending may go out as a plain FIN).
    const resetting = await target((socket) => {
      socket.once('data', () => {
        socket.write('HTTP/1.0 200 OK\r\n\r\nhalf a bo')
        socket.once('data', () => socket.resetAndDestroy())
      })
    })
    try {
      const listener = await listen()
      const grant = listener.grant('gateway', resetting.join)
      const socket = await dialDirect('127.0.0.1', grant.port, grant)
      socket.write('GET / HTTP/1.0\r\n\r\n')
      const read = readAll(socket)
      socket.once('data', () => socket.write('read it'))
      await assert.rejects(read, (error: unknown) => error instanceof LinkCutError)
      while (listener.stats().connections > 0) await new Promise((resolve) => setTimeout(resolve, 10))
    } finally {
      resetting.server.close()
    }
  })

  it('ends the target\'s connection when the opener goes away without a clean close', async () => {
    const seen: Array<Promise<{ error?: Error }>> = []
    let got = ''
    // A server that ends its side when its reader ends, as HTTP servers do.
    const watched = await target((socket) => {
      socket.once('end', () => socket.end())
      seen.push(closed(socket))
      socket.on('data', (chunk: Buffer) => (got += chunk.toString()))
    })
    try {
      const listener = await listen()
      const grant = listener.grant('gateway', watched.join)
      const socket = await dialDirect('127.0.0.1', grant.port, grant)
      socket.write('half a request')
      // Gone once the server has read what came (a reset behind unread bytes may read as an end on Linux).
      while (got !== 'half a request') await new Promise((resolve) => setTimeout(resolve, 10))
      socket.destroy()
      // Reset, not ended: the server knows the request was given up, not finished.
      assert.equal(((await seen[0])!.error as NodeJS.ErrnoException | undefined)?.code, 'ECONNRESET')
      while (listener.stats().connections > 0) await new Promise((resolve) => setTimeout(resolve, 10))
    } finally {
      watched.server.close()
    }
  })

  it('bounds a holder\'s links and tickets', async () => {
    const listener = await listen({ maxConnectionsPerHolder: 2, maxTicketsPerHolder: 2 })
    const first = listener.grant('greedy', echo.join)
    const open = [await dialDirect('127.0.0.1', first.port, first), await dialDirect('127.0.0.1', first.port, first)]
    await assert.rejects(joinedOf(await dialDirect('127.0.0.1', first.port, first)), isRemote('HEARTH_ERR_NET_BUSY'))
    // Another holder is not held back by this one.
    const other = listener.grant('other', echo.join)
    const theirs = await dialDirect('127.0.0.1', other.port, other)
    theirs.destroy()
    for (const socket of open) socket.destroy()
    // A third ticket for the same holder drops its oldest.
    listener.grant('greedy', echo.join)
    listener.grant('greedy', echo.join)
    await assert.rejects(dialDirect('127.0.0.1', first.port, first), isCode('HEARTH_ERR_NET_DIAL'))
  })

  it('resets connections over the handshakes one address may hold, and those that never finish one', async () => {
    const silent = (port: number): Socket => {
      const socket = connect({ host: '127.0.0.1', port })
      socket.on('error', () => {})
      return socket
    }
    const crowded = await listen({ maxHandshakesPerIp: 2 })
    const a = silent(crowded.port)
    await once(a, 'connect')
    const b = silent(crowded.port)
    await once(b, 'connect')
    await closed(silent(crowded.port))
    assert.equal(a.destroyed || b.destroyed, false, 'the first two still wait for their handshakes')
    assert.equal(crowded.stats().handshakes, 2)
    a.destroy()
    b.destroy()
    // Silence past the handshake's time ends a connection.
    const impatient = await listen({ handshakeTimeoutMs: 200 })
    await closed(silent(impatient.port))
    while (impatient.stats().handshakes > 0) await new Promise((resolve) => setTimeout(resolve, 10))
    assert.equal(impatient.stats().refusedHandshakes, 1)
  })

  it('ends its links when closed', async () => {
    const listener = await listenDirect({ host: '127.0.0.1' })
    const grant = listener.grant('gateway', echo.join)
    const socket = await dialDirect('127.0.0.1', grant.port, grant)
    const ended = over(socket)
    await listener.close()
    await ended
    await assert.rejects(dialDirect('127.0.0.1', grant.port, grant), isCode('HEARTH_ERR_NET_DIAL'))
  })
})
