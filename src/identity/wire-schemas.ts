/**
 * The scalar shapes every signed document on the wire is built from: addresses, hex strings and amounts in wei as
 * decimal strings (JSON has no bigint; 78 digits hold any uint256). One definition, so every layer refuses alike.
 */
import { z } from 'zod'

export const addressSchema = z.string().regex(/^0x[0-9a-fA-F]{40}$/, 'expected a 0x-prefixed 20-byte address')
export const hexSchema = z.string().regex(/^0x[0-9a-fA-F]*$/, 'expected 0x-prefixed hex')
export const decimalWeiSchema = z.string().regex(/^(0|[1-9][0-9]{0,77})$/, 'expected a decimal amount in wei')
