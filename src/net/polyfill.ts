/**
 * libp2p 3 calls Promise.withResolvers, which Node 20 lacks; without it dials fail with a misleading
 * ECONNRESET/TypeError. Import this module before anything that loads libp2p.
 */
if (typeof Promise.withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value: function withResolvers<T>(this: PromiseConstructor): PromiseWithResolvers<T> {
      let resolve!: (value: T | PromiseLike<T>) => void
      let reject!: (reason?: unknown) => void
      // `this` keeps subclasses working, as the standard method does.
      const promise = new this<T>((res, rej) => {
        resolve = res
        reject = rej
      })
      return { promise, resolve, reject }
    },
  })
}

export {}
