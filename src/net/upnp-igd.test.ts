import assert from 'node:assert/strict'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, test } from 'node:test'
import { elements, httpToRouter, igdServices, maxAnswerBytes, soapAnswer, soapEnvelope, ssdpLocation, upnpExternalAddress, upnpMapTcp, UpnpError } from './upnp-igd.ts'

// What miniupnpd 2.3.1 answers to an M-SEARCH for the gateway device.
const answer = [
  'HTTP/1.1 200 OK',
  'CACHE-CONTROL: max-age=120',
  'ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1',
  'USN: uuid:a2dfdd0e-43bd-4171-bbcb-138f4868cdcd::urn:schemas-upnp-org:device:InternetGatewayDevice:1',
  'EXT:',
  'SERVER: Debian/12 UPnP/1.1 MiniUPnPd/2.3.1',
  'LOCATION: http://192.168.1.1:5000/rootDesc.xml',
  '', '',
].join('\r\n')

test('an SSDP answer gives the description URL only when it is plain http:// on the device that answered', () => {
  assert.equal(ssdpLocation(answer, '192.168.1.1').href, 'http://192.168.1.1:5000/rootDesc.xml')
  assert.equal(ssdpLocation(answer.replace('LOCATION:', 'location:').replaceAll('\r\n', '\n'), '192.168.1.1').port, '5000')
  // A LAN device cannot point the node at a third machine, nor at the router's answer from another address.
  assert.throws(() => ssdpLocation(answer.replace('192.168.1.1:5000', '10.1.2.3'), '192.168.1.1'), /points at 10\.1\.2\.3, not at the device that answered \(192\.168\.1\.1\)/)
  assert.throws(() => ssdpLocation(answer, '192.168.1.66'), /not at the device that answered \(192\.168\.1\.66\)/)
  assert.throws(() => ssdpLocation(answer.replace('http://', 'https://'), '192.168.1.1'), /is not http:\/\//)
  assert.throws(() => ssdpLocation(answer.replace('http://192.168.1.1:5000/rootDesc.xml', 'file:///etc/passwd'), '192.168.1.1'), /is not http:\/\//)
  assert.throws(() => ssdpLocation(answer.replace('http://192.168.1.1:5000/rootDesc.xml', 'http://[nope'), '192.168.1.1'), /is not a URL/)
  assert.throws(() => ssdpLocation(answer.replace(/LOCATION:.*\r\n/, ''), '192.168.1.1'), /without a LOCATION/)
  // Answers for something else (a media server on the router), announcements, and oversized messages are refused.
  assert.throws(() => ssdpLocation(answer.replace('device:InternetGatewayDevice:1\r\n', 'device:MediaServer:1\r\n'), '192.168.1.1'), /MediaServer:1', not an Internet gateway/)
  assert.throws(() => ssdpLocation(answer.replace('HTTP/1.1 200 OK', 'NOTIFY * HTTP/1.1'), '192.168.1.1'), /not an SSDP search answer/)
  assert.throws(() => ssdpLocation(answer.replace('EXT:', `X: ${'a'.repeat(9000)}`), '192.168.1.1'), /an SSDP answer of \d+ bytes \(at most 8192\)/)
  assert.throws(() => ssdpLocation('', '192.168.1.1'), /not an SSDP search answer/)
})

// miniupnpd's device description, shortened: the WANIPConnection:2 service sits two devices deep.
const location = new URL('http://192.168.1.1:5000/rootDesc.xml')
const description = `<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0" configId="1337"><specVersion><major>1</major><minor>1</minor></specVersion><device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:2</deviceType><serviceList><service><serviceType>urn:schemas-upnp-org:service:Layer3Forwarding:1</serviceType><serviceId>urn:upnp-org:serviceId:L3Forwarding1</serviceId><SCPDURL>/L3F.xml</SCPDURL><controlURL>/ctl/L3F</controlURL><eventSubURL>/evt/L3F</eventSubURL></service></serviceList><deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:2</deviceType><serviceList><service><serviceType>urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1</serviceType><serviceId>urn:upnp-org:serviceId:WANCommonIFC1</serviceId><SCPDURL>/WANCfg.xml</SCPDURL><controlURL>/ctl/CmnIfCfg</controlURL><eventSubURL>/evt/CmnIfCfg</eventSubURL></service></serviceList><deviceList><device><deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:2</deviceType><serviceList><service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:2</serviceType><serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId><SCPDURL>/WANIPCn.xml</SCPDURL><controlURL>/ctl/IPConn</controlURL><eventSubURL>/evt/IPConn</eventSubURL></service></serviceList></device></deviceList></device></deviceList></device></root>`

/** A v1 description with a URLBase, a PPP service listed before the IP one, and namespace prefixes. */
const v1 = (control: string, urlBase = 'http://192.168.1.1:49000/'): string => `<?xml version="1.0"?><root xmlns="urn:schemas-upnp-org:device-1-0"><URLBase>${urlBase}</URLBase><device>
  <serviceList>
    <service><serviceType>urn:schemas-upnp-org:service:WANPPPConnection:1</serviceType><controlURL>/upnp/control/WANPPPConn1</controlURL></service>
    <d:service xmlns:d="urn:x"><d:serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</d:serviceType><d:controlURL>${control}</d:controlURL></d:service>
  </serviceList></device></root>`

test('the device description gives the port-mapping services, best first, on the router\'s own address', () => {
  assert.deepEqual(igdServices(description, location).map((s) => [s.serviceType, s.controlUrl.href]), [['urn:schemas-upnp-org:service:WANIPConnection:2', 'http://192.168.1.1:5000/ctl/IPConn']])
  // Relative to the URLBase; the IP service before the PPP one; entities decoded.
  assert.deepEqual(igdServices(v1('/upnp/control?svc=ip&amp;n=1'), location).map((s) => [s.serviceType, s.controlUrl.href]), [
    ['urn:schemas-upnp-org:service:WANIPConnection:1', 'http://192.168.1.1:49000/upnp/control?svc=ip&n=1'],
    ['urn:schemas-upnp-org:service:WANPPPConnection:1', 'http://192.168.1.1:49000/upnp/control/WANPPPConn1'],
  ])
  // A control URL elsewhere, or not http, is refused; the other service stays.
  assert.deepEqual(igdServices(v1('http://10.9.9.9/ctl'), location).map((s) => s.serviceType), ['urn:schemas-upnp-org:service:WANPPPConnection:1'])
  assert.throws(() => igdServices(v1('/ctl', 'http://10.9.9.9/').replace(/<service>.*?<\/service>/, ''), location), /offers no WANIPConnection or WANPPPConnection service: its controlURL http:\/\/10\.9\.9\.9\/ctl is not http:\/\/ on 192\.168\.1\.1/)
  assert.throws(() => igdServices(v1('https://192.168.1.1/ctl').replace(/<service>.*?<\/service>/, ''), location), /controlURL https:\/\/192\.168\.1\.1\/ctl is not http:\/\//)
  assert.throws(() => igdServices(v1('/ctl', 'http://[broken'), location), /URLBase that is not a URL/)
})

test('a description without a port-mapping service, malformed or hostile XML, gives a clear error', () => {
  for (const xml of [
    '',
    'not xml at all',
    description.replaceAll('WANIPConnection', 'WANIPv6FirewallControl'),
    // Truncated, unclosed, markup inside a text element.
    description.slice(0, description.indexOf('/ctl/IPConn')),
    description.replace('</controlURL><eventSubURL>/evt/IPConn', '<eventSubURL>/evt/IPConn'),
    description.replace('<controlURL>/ctl/IPConn', '<controlURL><b>/ctl/IPConn</b>'),
    // Many unclosed or nested elements: read in time linear in the length (the answer is capped at 64 KiB anyway).
    '<service><serviceType>'.repeat(maxAnswerBytes / 22),
    `${'<service>'.repeat(7000)}</service>`,
  ]) {
    assert.throws(() => igdServices(xml, location), /offers no WANIPConnection or WANPPPConnection service/, xml.slice(0, 100))
  }
  assert.deepEqual(elements('<a>1</a><x:a k="v">2</x:a><a/><ab>3</ab><a>unclosed', 'a'), ['1', '2', ''])
})

test('SOAP answers give the response\'s content; faults become errors that say what is wrong and what to do', () => {
  const ok = '<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><u:GetExternalIPAddressResponse xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:2"><NewExternalIPAddress>11.0.0.2</NewExternalIPAddress></u:GetExternalIPAddressResponse></s:Body></s:Envelope>'
  assert.equal(soapAnswer('GetExternalIPAddress', 200, ok), '<NewExternalIPAddress>11.0.0.2</NewExternalIPAddress>')
  // miniupnpd answers AddPortMapping with an empty element.
  assert.equal(soapAnswer('AddPortMapping', 200, '<s:Envelope><s:Body><u:AddPortMappingResponse xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:2"/></s:Body></s:Envelope>'), '')
  const fault = (code: string, description: string): string => `<s:Envelope><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>${code}</errorCode><errorDescription>${description}</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>`
  assert.throws(() => soapAnswer('AddPortMapping', 500, fault('718', 'ConflictInMappingEntry')), (error: unknown) => {
    assert.ok(error instanceof UpnpError && error.code === 718)
    assert.match(error.message, /the router refused AddPortMapping: UPnP error 718 ConflictInMappingEntry \(another machine on the network holds this external port\); switch UPnP port forwarding on .* --announce/)
    return true
  })
  assert.throws(() => soapAnswer('AddPortMapping', 500, fault('606', 'Action not authorized')), /UPnP error 606 Action not authorized \(not authorised: the router lets only some machines map ports/)
  assert.throws(() => soapAnswer('AddPortMapping', 500, fault('725', 'OnlyPermanentLeasesSupported')), (error: unknown) => error instanceof UpnpError && error.code === 725)
  // An unknown code is still reported; a description with control characters or at great length is cut down.
  assert.throws(() => soapAnswer('DeletePortMapping', 500, fault('899', `Odd\u0007${'x'.repeat(500)}`)), (error: unknown) => error instanceof Error && /UPnP error 899 Oddx+;/.test(error.message) && error.message.length < 400)
  assert.throws(() => soapAnswer('AddPortMapping', 500, fault('abc', 'nothing')), /answered AddPortMapping with HTTP 500 and no UPnP error/)
  assert.throws(() => soapAnswer('AddPortMapping', 404, '<html>Not found</html>'), /answered AddPortMapping with HTTP 404 and no UPnP error/)
  assert.throws(() => soapAnswer('GetExternalIPAddress', 200, ok.replaceAll('GetExternalIPAddressResponse', 'SomethingElse')), /is not a SOAP GetExternalIPAddressResponse/)
})

test('a SOAP request carries its arguments in order, escaped', () => {
  const body = soapEnvelope('urn:schemas-upnp-org:service:WANIPConnection:1', 'AddPortMapping', [['NewExternalPort', 7690], ['NewPortMappingDescription', 'a<b>&"c\'']])
  assert.match(body, /<u:AddPortMapping xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:1"><NewExternalPort>7690<\/NewExternalPort><NewPortMappingDescription>a&#60;b&#62;&#38;&#34;c&#39;<\/NewPortMappingDescription><\/u:AddPortMapping>/)
})

// A router on 127.0.0.1 that answers as each test says: the client's own HTTP bounds are real.
let server: Server
let base: string
let handler: (request: IncomingMessage, body: string, response: ServerResponse) => void = (_, __, response) => response.end()
before(async () => {
  server = createServer((request, response) => {
    let body = ''
    request.on('data', (chunk: Buffer) => (body += chunk.toString()))
    request.on('end', () => handler(request, body, response))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})
after(() => {
  server.closeAllConnections()
  server.close()
})

test('a router\'s HTTP answer is bounded in size and time', async () => {
  handler = (_, __, response) => response.end('<root/>')
  const fine = await httpToRouter(new URL(`${base}/desc.xml`), 'the device description', AbortSignal.timeout(10_000))
  assert.deepEqual([fine.status, fine.body, fine.localIp], [200, '<root/>', '127.0.0.1'])
  // Too big by its declared length, or as it streams (chunked, no length).
  handler = (_, __, response) => response.end('x'.repeat(maxAnswerBytes + 1))
  await assert.rejects(httpToRouter(new URL(`${base}/desc.xml`), 'the device description', AbortSignal.timeout(10_000)), /the device description at 127\.0\.0\.1:\d+: an answer of 65537 bytes \(at most 65536\)/)
  handler = (_, __, response) => {
    for (let i = 0; i < 20; i++) response.write('y'.repeat(8192))
    response.end()
  }
  await assert.rejects(httpToRouter(new URL(`${base}/desc.xml`), 'the device description', AbortSignal.timeout(10_000)), /an answer over 65536 bytes/)
  // Headers that never end; a router that says nothing; one that trickles its body.
  handler = (_, __, response) => {
    response.setHeader('X-Big', 'z'.repeat(10_000))
    response.end()
  }
  await assert.rejects(httpToRouter(new URL(`${base}/desc.xml`), 'the device description', AbortSignal.timeout(10_000)), /the device description at 127\.0\.0\.1:\d+: .*[Hh]eader/)
  handler = () => {}
  await assert.rejects(httpToRouter(new URL(`${base}/desc.xml`), 'the device description', AbortSignal.timeout(10_000), undefined, 300), /the router at 127\.0\.0\.1:\d+ did not answer the device description within 0\.3 s/)
  handler = (_, __, response) => {
    response.write('<root>')
    const trickle = setInterval(() => (response.destroyed ? clearInterval(trickle) : response.write(' ')), 50)
  }
  await assert.rejects(httpToRouter(new URL(`${base}/desc.xml`), 'the device description', AbortSignal.timeout(10_000), undefined, 300), /did not answer the device description within 0\.3 s/)
  // The caller's own abort comes through as itself.
  await assert.rejects(httpToRouter(new URL(`${base}/desc.xml`), 'the device description', AbortSignal.abort(new Error('stopping'))), /^Error: stopping$/)
})

test('a router that takes only permanent mappings is asked for one; a taken port is asked for another once', async () => {
  const igd = { controlUrl: new URL(`${base}/ctl`), serviceType: 'urn:schemas-upnp-org:service:WANIPConnection:1', localIp: '127.0.0.1' }
  const added: Array<{ port: string; lease: string; client: string; description: string }> = []
  const reply = (response: ServerResponse, action: string, inner: string): void => {
    response.end(`<s:Envelope><s:Body><u:${action}Response xmlns:u="${igd.serviceType}">${inner}</u:${action}Response></s:Body></s:Envelope>`)
  }
  const refuse = (response: ServerResponse, code: number): void => {
    response.statusCode = 500
    response.end(`<s:Envelope><s:Body><s:Fault><detail><UPnPError><errorCode>${code}</errorCode><errorDescription>refused</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>`)
  }
  let taken = (_port: string): boolean => false
  handler = (request, body, response) => {
    const action = /#(\w+)"$/.exec(String(request.headers.soapaction))?.[1] ?? ''
    if (action === 'GetExternalIPAddress') return reply(response, action, '<NewExternalIPAddress>11.0.0.2</NewExternalIPAddress>')
    const field = (name: string): string => new RegExp(`<${name}>([^<]*)</${name}>`).exec(body)?.[1] ?? ''
    const entry = { port: field('NewExternalPort'), lease: field('NewLeaseDuration'), client: field('NewInternalClient'), description: field('NewPortMappingDescription') }
    added.push(entry)
    if (taken(entry.port)) return refuse(response, 718)
    if (entry.lease !== '0') return refuse(response, 725)
    reply(response, action, '')
  }
  const mapping = await upnpMapTcp(igd, 7690, 7690, 3600, AbortSignal.timeout(10_000))
  assert.deepEqual(mapping, { externalIp: '11.0.0.2', externalPort: 7690, internalIp: '127.0.0.1', internalPort: 7690, lifetimeSec: 3600 })
  assert.deepEqual(added, [{ port: '7690', lease: '3600', client: '127.0.0.1', description: 'hearth' }, { port: '7690', lease: '0', client: '127.0.0.1', description: 'hearth' }])

  // Port 7690 is another machine's: one other port is asked; when that is taken too, the error says so.
  added.length = 0
  taken = (port) => port === '7690'
  const moved = await upnpMapTcp(igd, 7690, 7690, 3600, AbortSignal.timeout(10_000))
  assert.notEqual(moved.externalPort, 7690)
  assert.deepEqual(added.map((a) => a.port), ['7690', String(moved.externalPort), String(moved.externalPort)])
  taken = () => true
  await assert.rejects(upnpMapTcp(igd, 7690, 7690, 3600, AbortSignal.timeout(10_000)), /UPnP error 718 refused \(another machine on the network holds this external port\)/)

  // A router that does not know its public address.
  handler = (_, __, response) => reply(response, 'GetExternalIPAddress', '<NewExternalIPAddress></NewExternalIPAddress>')
  await assert.rejects(upnpExternalAddress(igd, AbortSignal.timeout(10_000)), /the router does not know its public address \(GetExternalIPAddress answered ''\): its internet connection may be down/)
})
