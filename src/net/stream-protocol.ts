/**
 * Streaming protocols over libp2p: one signed request, then a sequence of events, ending with one signed result.
 *
 * Wire format (every frame is a length-prefixed JSON frame, see json-frames.ts):
 * - requester → responder: the request as a Signed<body> envelope; then control frames `{ credit: n }` (the requester
 *   is ready for n more events) or `{ cancel: reason }`; the requester closes its side only after the result.
 * - responder → requester: event frames `{ e: body }`, keep-alive frames `{ k: 1 }` while the handler is quiet, and one
 *   final frame `{ ok: true, events, body: Signed<result> }` or `{ ok: false, error: { code, message, hint? } }`.
 *
 * Back-pressure is by credit: the responder sends an event only while the requester has granted room for it, so a
 * slow reader slows the producer instead of filling buffers. Either side may cancel: the requester by a cancel frame,
 * by closing or resetting the stream (the handler's signal aborts), the responder by ending with an error frame.
 * Every frame is bounded (per frame and in total, in bytes and in count), the whole exchange has a deadline and the
 * gap between two frames is bounded, so a hostile peer can waste at most those bounds and never crashes the node.
 *
 * The protocol's shape and frames are in stream-protocol-spec.ts, its responder in stream-responder.ts and its
 * requester in stream-caller.ts; this module gathers them.
 */
import './polyfill.ts'
export { defineStreamProtocol } from './stream-protocol-spec.ts'
export type {
  OpenStreamOptions, StreamCall, StreamContext, StreamDeps, StreamHandler, StreamProtocol, StreamProtocolSpec, StreamServer,
} from './stream-protocol-spec.ts'
export { serveStreamProtocol } from './stream-responder.ts'
export { openStream } from './stream-caller.ts'
