import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { counter, detectCgroups, parseMountinfo, parseSelfCgroup } from './cgroups.ts'

let base: string

before(async () => {
  base = await mkdtemp(join(tmpdir(), 'hearth-cgroups-'))
})

after(async () => {
  await rm(base, { recursive: true, force: true })
})

/** A fake /proc/self/mountinfo and /proc/self/cgroup, for hierarchies laid out under `dir`. */
async function fakeProc(dir: string, mountinfo: string, selfCgroup: string): Promise<{ mountinfoPath: string; selfCgroupPath: string }> {
  await mkdir(dir, { recursive: true })
  await writeFile(join(dir, 'mountinfo'), mountinfo)
  await writeFile(join(dir, 'cgroup'), selfCgroup)
  return { mountinfoPath: join(dir, 'mountinfo'), selfCgroupPath: join(dir, 'cgroup') }
}

describe('cgroups', () => {
  it('parses mountinfo and /proc/self/cgroup (co-mounted controllers, escaped paths, v2 entry)', () => {
    const mounts = parseMountinfo(
      [
        '32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct',
        '41 31 0:38 /docker/abc /sys/fs/cgroup/my\\040groups rw,relatime - cgroup2 cgroup2 rw,nsdelegate',
        'garbage',
      ].join('\n'),
    )
    assert.deepEqual(mounts, [
      { root: '/', mountPoint: '/sys/fs/cgroup/cpu,cpuacct', fsType: 'cgroup', superOptions: ['rw', 'cpu', 'cpuacct'] },
      { root: '/docker/abc', mountPoint: '/sys/fs/cgroup/my groups', fsType: 'cgroup2', superOptions: ['rw', 'nsdelegate'] },
    ])
    const membership = parseSelfCgroup('12:pids:/user.slice\n4:cpu,cpuacct:/\n1:name=systemd:/init.scope\n0::/user.slice/session-2.scope\n')
    assert.equal(membership.get('pids'), '/user.slice')
    assert.equal(membership.get('cpuacct'), '/')
    assert.equal(membership.get(''), '/user.slice/session-2.scope')
    assert.equal(counter('oom_kill_disable 0\nunder_oom 0\noom_kill 3\n', 'oom_kill'), 3)
    assert.equal(counter('usage_usec 1500\nuser_usec 1000\n', 'usage_usec'), 1500)
    assert.equal(counter('', 'oom_kill'), 0)
  })

  it('cgroup v2: enables the controllers for children and writes the limits of a run group', async () => {
    const root = join(base, 'v2', 'fs')
    const parent = join(root, 'hearth.slice')
    await mkdir(parent, { recursive: true })
    await writeFile(join(parent, 'cgroup.controllers'), 'cpuset cpu io memory hugetlb pids rdma\n')
    await writeFile(join(parent, 'cgroup.subtree_control'), '')
    const paths = await fakeProc(join(base, 'v2', 'proc'), `30 23 0:26 / ${root} rw,nosuid - cgroup2 cgroup2 rw\n`, '0::/hearth.slice\n')
    const detected = await detectCgroups(paths)
    assert.ok(detected.ok, detected.ok ? '' : detected.reason)
    const { cgroups } = detected
    assert.equal(cgroups.version, 2)
    assert.deepEqual(cgroups.parents, [parent])
    assert.equal(await readFile(join(parent, 'cgroup.subtree_control'), 'utf8'), '+memory +cpu +pids')

    const group = await cgroups.create({ memoryBytes: 64 << 20, cpuCores: 0.5, maxProcesses: 32 })
    const folder = join(parent, group.name)
    assert.deepEqual(group.procsFiles, [join(folder, 'cgroup.procs')])
    assert.equal(await readFile(join(folder, 'memory.max'), 'utf8'), String(64 << 20))
    assert.equal(await readFile(join(folder, 'cpu.max'), 'utf8'), '50000 100000')
    assert.equal(await readFile(join(folder, 'pids.max'), 'utf8'), '32')
    await writeFile(join(folder, 'cpu.stat'), 'usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n')
    await writeFile(join(folder, 'memory.events'), 'low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n')
    assert.equal(await group.cpuNs(), 2_500_000)
    assert.equal(await group.oomKills(), 1)
    assert.deepEqual(await cgroups.leftovers(), [folder])
    await rm(folder, { recursive: true })
    assert.deepEqual(await cgroups.leftovers(), [])
  })

  it('says what is missing: v2 without the pids controller, v1 without pids', async () => {
    const root = join(base, 'missing', 'fs')
    await mkdir(join(root, 'v2'), { recursive: true })
    await writeFile(join(root, 'v2', 'cgroup.controllers'), 'cpu memory\n')
    for (const name of ['memory', 'cpu,cpuacct']) await mkdir(join(root, name), { recursive: true })
    const paths = await fakeProc(
      join(base, 'missing', 'proc'),
      [
        `30 23 0:26 / ${join(root, 'v2')} rw - cgroup2 cgroup2 rw`,
        `31 23 0:27 / ${join(root, 'memory')} rw - cgroup cgroup rw,memory`,
        `32 23 0:28 / ${join(root, 'cpu,cpuacct')} rw - cgroup cgroup rw,cpu,cpuacct`,
      ].join('\n'),
      '3:memory:/\n2:cpu,cpuacct:/\n0::/\n',
    )
    const detected = await detectCgroups(paths)
    assert.equal(detected.ok, false)
    assert.match(detected.ok ? '' : detected.reason, /cgroup v2 .* does not offer the pids controller/)
    assert.match(detected.ok ? '' : detected.reason, /cgroup v1 lacks the pids controller/)
  })

  it('cgroup v1: one folder for co-mounted cpu,cpuacct, limits written in each hierarchy', async () => {
    const root = join(base, 'v1', 'fs')
    for (const name of ['memory/docker/abc', 'cpu,cpuacct', 'pids']) await mkdir(join(root, name), { recursive: true })
    const paths = await fakeProc(
      join(base, 'v1', 'proc'),
      [
        `31 23 0:27 / ${join(root, 'memory')} rw - cgroup cgroup rw,memory`,
        `32 23 0:28 / ${join(root, 'cpu,cpuacct')} rw - cgroup cgroup rw,cpu,cpuacct`,
        `33 23 0:29 / ${join(root, 'pids')} rw - cgroup cgroup rw,pids`,
      ].join('\n'),
      '4:memory:/docker/abc\n3:cpu,cpuacct:/\n2:pids:/\n0::/\n',
    )
    const detected = await detectCgroups(paths)
    assert.ok(detected.ok, detected.ok ? '' : detected.reason)
    const { cgroups } = detected
    assert.equal(cgroups.version, 1)
    assert.deepEqual(cgroups.parents, [join(root, 'memory/docker/abc'), join(root, 'cpu,cpuacct'), join(root, 'pids')])
    const group = await cgroups.create({ memoryBytes: 1000, cpuCores: 2, maxProcesses: 8 })
    // below 1 MiB nothing can start: the floor applies
    assert.equal(await readFile(join(root, 'memory/docker/abc', group.name, 'memory.limit_in_bytes'), 'utf8'), String(1 << 20))
    assert.equal(await readFile(join(root, 'cpu,cpuacct', group.name, 'cpu.cfs_quota_us'), 'utf8'), '200000')
    assert.equal(await readFile(join(root, 'pids', group.name, 'pids.max'), 'utf8'), '8')
    assert.equal(group.procsFiles.length, 3)
  })

  it('on this machine: a run group limits, meters and kills real processes, and is removed; stale groups are swept', async () => {
    const detected = await detectCgroups()
    assert.ok(detected.ok, `cgroups are not usable here: ${detected.ok ? '' : detected.reason}`)
    const { cgroups } = detected
    const group = await cgroups.create({ memoryBytes: 64 << 20, cpuCores: 1, maxProcesses: 16 })
    // a shell joins the group, then forks two busy children; killAll must take all three
    const child = spawn('/bin/sh', ['-c', 'for f; do echo $$ > "$f"; done; (while :; do :; done) & (while :; do :; done) & wait', 'sh', ...group.procsFiles], {
      stdio: 'ignore',
    })
    const exited = new Promise((resolve) => child.once('exit', resolve))
    while ((await group.pids()).length < 3) await new Promise((resolve) => setTimeout(resolve, 20))
    await new Promise((resolve) => setTimeout(resolve, 100))
    await group.killAll()
    assert.deepEqual(await group.pids(), [])
    assert.ok((await group.cpuNs()) > 0)
    await exited
    await group.remove()
    assert.deepEqual(await cgroups.leftovers(), [])

    // a group named after a process that no longer exists is swept by the next detection
    const dead = spawn('/bin/true')
    await new Promise((resolve) => dead.once('exit', resolve))
    const stale = cgroups.parents.map((parent) => join(parent, `hearth-run-${dead.pid}-1`))
    for (const folder of stale) await mkdir(folder)
    assert.ok(await detectCgroups().then((again) => again.ok))
    for (const folder of stale) assert.equal(await stat(folder).catch(() => undefined), undefined, `${folder} was not swept`)
  })
})
