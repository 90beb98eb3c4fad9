#!/usr/bin/env python3
# What-if of the offline scheduler on one H100 (Llama-3-8B, bf16), no GPU needed:
# a cost model of one step (linears: the larger of FLOPs at 0.78 of the peak and
# weights at 0.72 of HBM; prefill attention at PA_TFLOPS; decode attention at
# 0.88 of HBM; small ops per token), calibrated on the op profiles of
# docs/PERF.md (sessions 9 and 11: it lands within 3-6 % of the measured runs),
# and a model of the scheduler (decodes first, then prompts in queue order up
# to the step budget, or to the decode-step cap unless exempt: as many outputs
# to make as the longest running decode; admission reserves prompt + outputs,
# so no eviction).
# Prints each policy's time for 128/128, 1000/1000, the mixed and the
# sharegpt-like workloads. usage: [OVERLAP=none|attention|full|nano] tools/sim_schedule.py MIXED.jsonl
# SHAREGPT.jsonl (make_workload.py seed 0: --n 256 --isl 64-2048 --osl 32-512, and --kind sharegpt)
import json, sys
# Cost model of one H100 step (Llama-3-8B bf16), calibrated on session 9/11 op profiles.
PEAK=796e12; BW=3031e9; W=15.01e9; KVB=131072; FPT=2*7.505e9; FPC=4.0*32*32*128
# OVERLAP (env): none (one stream), attention (decode attention beside prompt
# attention, each 15 % slower for sharing the GPU: --cuda-attention-streams 2),
# full (decode attention beside all of a step's FLOP-bound work, for free: an
# upper bound), nano (NanoFlow-style: the decode rows and the prompt rows as two
# batches on two streams through every layer; each reads the weights, so the
# step is the larger of both streams' bytes at the HBM and both streams' FLOPs
# at the peak, plus 10 % of the smaller for sharing the SMs).
OVERLAP = __import__('os').environ.get('OVERLAP', 'none')
# Prefill attention's TFLOP/s in a real prompt step: 90 with mma.sync (session 9),
# 143 with the wgmma kernel (session 12's op profile).
PA_TFLOPS = float(__import__('os').environ.get('PA_TFLOPS', '143'))

def step_time(prompt_chunks, decode_ctx):
    # prompt_chunks: list of (start, count); decode_ctx: list of contexts
    n = sum(c for s,c in prompt_chunks) + len(decode_ctx)
    t_lin = max(FPT*n/(0.78*PEAK), W/(0.72*BW))
    pf = sum(FPC*(c*s + c*(c+1)/2) for s,c in prompt_chunks)
    t_pa = pf/(PA_TFLOPS*1e12) if pf else 0
    t_da = sum(decode_ctx)*KVB/(0.88*BW)
    t_small = n*2.0e-6 + 0.45e-3 + 0.9e-3*(1 if decode_ctx else 0)
    if OVERLAP == 'attention':
        return t_lin + t_small + max(t_pa, t_da) + 0.15*min(t_pa, t_da)
    if OVERLAP == 'full' and prompt_chunks:
        comp = t_lin + t_pa + t_small
        return max(comp, t_da) + 0.1*min(comp, t_da)
    if OVERLAP == 'nano' and prompt_chunks and decode_ctx:
        n_p = n - len(decode_ctx)
        mem = 2*W/(0.72*BW) + t_da  # both batches read the weights; decode reads the KV
        comp = FPT*n/(0.78*PEAK) + t_pa
        return max(mem, comp) + 0.1*min(mem, comp) + t_small + 0.45e-3  # two streams' small ops
    return t_lin + t_pa + t_da + t_small

def simulate(reqs, budget=8192, max_batch=256, order=None, kv_tokens=444880, decode_budget=None,
             exempt=False):
    # reqs: list of (prompt, outputs). Scheduler: decodes first, then prompts in queue order
    # (the running prefill continues first), chunked to the step's budget.
    queue = list(range(len(reqs)))
    if order == 'longest_output': queue.sort(key=lambda i: -reqs[i][1])
    running = []  # dicts: id, done (prompt tokens computed), out (outputs made)
    t = 0.0; steps = 0; out_tokens = 0
    while queue or running:
        decodes = [r for r in running if r['done'] == reqs[r['id']][0]]
        prefilling = [r for r in running if r['done'] < reqs[r['id']][0]]
        capped = decode_budget is not None and decodes
        full = budget - len(decodes)  # what is left of the step's budget
        cap = (decode_budget if capped else budget) - len(decodes)  # of the capped budget
        # exempt (SchedulerConfig::decode_step_tokens): a sequence with as many
        # outputs to make as the longest running decode takes the full budget.
        horizon = max((reqs[r['id']][1] - r['out'] for r in decodes), default=0)
        room = lambda i, out: full if (exempt and reqs[i][1] - out + 1 >= horizon) else cap
        chunks = []
        for r in prefilling:
            c = min(reqs[r['id']][0] - r['done'], room(r['id'], r['out']))
            if c <= 0: continue
            chunks.append((r, c)); full -= c; cap -= c
        used = sum(r['done'] + r['out'] for r in running)
        while queue and full > 0 and len(running) < max_batch:
            i = queue[0]; p, o = reqs[i]
            if used + p + o > kv_tokens or room(i, 0) <= 0: break
            queue.pop(0); r = {'id': i, 'done': 0, 'out': 0}; running.append(r); used += p + o
            c = min(p, room(i, 0)); chunks.append((r, c)); full -= c; cap -= c
        dt = step_time([(r['done'], c) for r, c in chunks], [r['done'] + r['out'] for r in decodes])
        t += dt; steps += 1
        for r, c in chunks:
            r['done'] += c
            if r['done'] == reqs[r['id']][0]: r['out'] += 1; out_tokens += 1  # first output
        for r in decodes: r['out'] += 1; out_tokens += 1
        running = [r for r in running if r['out'] < reqs[r['id']][1]]
    return t, steps, out_tokens

def load(f):
    return [(len(j['prompt_tokens']), j['max_new_tokens']) for j in map(json.loads, open(f))]

wl = {'128/128': [(128,128)]*256, '1000/1000': [(1000,1000)]*256,
      'mixed': load(sys.argv[1]), 'sharegpt': load(sys.argv[2])}
# Measured on the H100, 2026-12-07 (docs/PERF.md, session 13: the defaults, which are
# longest output first + 512 exempt, with decode attention on its own stream), for comparison.
meas = {'128/128': 14925, '1000/1000': 7353, 'mixed': 5206, 'sharegpt': 8385}
for name, reqs in wl.items():
    outs = sum(o for p,o in reqs)
    print(f"== {name}: measured {meas[name]} tok/s = {outs/meas[name]:.2f} s")
    for label, kw in [('now (8192)', {}),
                      ('decode steps budget 2048', {'decode_budget': 2048}),
                      ('decode steps budget 1024', {'decode_budget': 1024}),
                      ('decode steps budget 512', {'decode_budget': 512}),
                      ('longest output first', {'order': 'longest_output'}),
                      ('longest first + 2048', {'order': 'longest_output', 'decode_budget': 2048}),
                      ('longest first + 1024', {'order': 'longest_output', 'decode_budget': 1024}),
                      ('longest first + 512', {'order': 'longest_output', 'decode_budget': 512}),
                      ('longest + 256 exempt', {'order': 'longest_output', 'decode_budget': 256, 'exempt': True}),
                      ('longest + 512 exempt', {'order': 'longest_output', 'decode_budget': 512, 'exempt': True}),
                      ('longest + 1024 exempt', {'order': 'longest_output', 'decode_budget': 1024, 'exempt': True})]:
        t, steps, o = simulate(reqs, **kw)
        print(f"  {label:28s} {t:6.2f} s  {o/t:8.0f} tok/s  {steps} steps")
