/** Types of build-stamp.js (plain JavaScript, so that bin/hearth.js needs no loader), for scripts/build-js.ts. */
export declare const stampPath: string
export declare function sourceFingerprint(root: string): string | undefined
export declare function readStamp(root: string): { fingerprint: string } | undefined
export declare function pickEntry(root: string, env?: NodeJS.ProcessEnv): 'dist' | 'src'
