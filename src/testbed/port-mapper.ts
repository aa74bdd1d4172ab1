/**
 * The home router's port mapper: miniupnpd in a NAT router's namespace, offering NAT-PMP, UPnP IGD or both to the
 * host behind it, with the iptables-legacy chains it works on.
 */
import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { lanOf, type NatPlan } from './plan.ts'
import { must, onPath, runProcess, stateDir } from './system.ts'

/** Where a testbed router's miniupnpd serves UPnP IGD's device description and SOAP control (on its LAN address). */
export const UPNP_HTTP_PORT = 5000

const mapsPorts = (nat: NatPlan): boolean => nat.portMapping.natPmp || nat.portMapping.upnp

/**
 * Port mapping on a router: miniupnpd (its iptables backend works on the legacy tables) offering NAT-PMP, UPnP IGD or
 * both, its chains, and a rule that lets through what a mapping forwards (the router's own filter drops everything
 * else that arrives on wan0). The daemon runs in the router's namespace, so that down() ends it with the namespace's
 * other processes. A host's SSDP search (multicast to 239.255.255.250) leaves by its default route's interface, the
 * LAN, as on a home network: no multicast route is needed.
 */
async function startPortMapper(prefix: string, nat: NatPlan): Promise<void> {
  const { natPmp, upnp } = nat.portMapping
  const legacy = 'iptables-legacy'
  await must('ip', ['netns', 'exec', nat.router, 'sh', '-c', [
    `${legacy} -t nat -N MINIUPNPD`,
    `${legacy} -t nat -I PREROUTING -i wan0 -j MINIUPNPD`,
    `${legacy} -t nat -N MINIUPNPD-POSTROUTING`,
    `${legacy} -t nat -I POSTROUTING -o wan0 -j MINIUPNPD-POSTROUTING`,
    `${legacy} -t mangle -N MINIUPNPD`,
    `${legacy} -t mangle -I PREROUTING -i wan0 -j MINIUPNPD`,
    `${legacy} -N MINIUPNPD`,
    `${legacy} -I FORWARD -i wan0 ! -o wan0 -j MINIUPNPD`,
    'iptables -I FORWARD 1 -i wan0 -m conntrack --ctstate DNAT -j ACCEPT',
  ].join(' && ')])
  const config = join(stateDir(prefix), `${nat.router}.miniupnpd.conf`)
  await writeFile(config, [
    'ext_ifname=wan0',
    'listening_ip=lan0',
    `http_port=${UPNP_HTTP_PORT}`,
    `enable_natpmp=${natPmp ? 'yes' : 'no'}`,
    `enable_upnp=${upnp ? 'yes' : 'no'}`,
    'secure_mode=yes',
    `uuid=${randomUUID()}`,
    `allow 1024-65535 ${lanOf(nat, 1).replace(/\.1$/, '.0')}/24 1024-65535`,
    'deny 0-65535 0.0.0.0/0 0-65535',
    '',
  ].join('\n'))
  spawn('ip', ['netns', 'exec', nat.router, 'miniupnpd', '-d', '-f', config, '-P', join(stateDir(prefix), `${nat.router}.miniupnpd.pid`)], { detached: true, stdio: 'ignore' }).unref()
  // Ready once it listens: on UDP 5351 for NAT-PMP, on UDP 1900 (SSDP) and its HTTP port for UPnP.
  const sockets = [...(natPmp ? [['-Huln', 'sport = :5351']] : []), ...(upnp ? [['-Huln', 'sport = :1900'], ['-Htln', `sport = :${UPNP_HTTP_PORT}`]] : [])]
  const deadline = Date.now() + 10_000
  for (;;) {
    const listening = await Promise.all(sockets.map((args) => runProcess('ip', ['netns', 'exec', nat.router, 'ss', ...args], { timeoutMs: 5_000 })))
    if (listening.every((result) => result.stdout.trim() !== '')) return
    if (Date.now() > deadline) throw new Error(`miniupnpd did not start in ${nat.router}`)
    await sleep(100)
  }
}

/** Fails when a router of the plan maps ports but this machine lacks miniupnpd or iptables-legacy. */
export function requirePortMapper(nats: NatPlan[]): void {
  if (nats.some(mapsPorts) && !(onPath('miniupnpd') && onPath('iptables-legacy'))) {
    throw new Error('a router with port mapping needs miniupnpd and iptables-legacy; as root: apt-get install -y --no-install-recommends miniupnpd miniupnpd-iptables')
  }
}

/** Starts the port mapper of every router of the plan that maps ports, and waits until each listens. */
export async function startPortMappers(prefix: string, nats: NatPlan[]): Promise<void> {
  await Promise.all(nats.filter(mapsPorts).map((nat) => startPortMapper(prefix, nat)))
}
