import assert from 'node:assert/strict'
import { test } from 'node:test'
import { gpuOfferProperties } from './provider-agent.ts'

test('an offer states how many GPUs, which models, and the memory of the smallest', () => {
  assert.deepEqual(gpuOfferProperties([]), { 'hearth.inf.gpu.count': 0 })
  const gpus = [
    { index: 0, model: 'NVIDIA GeForce RTX 3090', memoryMib: 24_576, driverVersion: '535.104.05', source: 'nvidia-smi' as const },
    { index: 1, model: 'NVIDIA GeForce RTX 3060', memoryMib: 12_288, driverVersion: '535.104.05', source: 'nvidia-smi' as const },
  ]
  assert.deepEqual(gpuOfferProperties(gpus), {
    'hearth.inf.gpu.count': 2,
    'hearth.inf.gpu.model': ['NVIDIA GeForce RTX 3090', 'NVIDIA GeForce RTX 3060'],
    'hearth.inf.gpu.mem.gib': 12,
  })
  // /proc does not say how much memory a card has: the offer then does not claim any.
  assert.deepEqual(gpuOfferProperties([{ ...gpus[0]!, memoryMib: undefined, source: 'proc' as const }]), { 'hearth.inf.gpu.count': 1, 'hearth.inf.gpu.model': ['NVIDIA GeForce RTX 3090'] })
})
