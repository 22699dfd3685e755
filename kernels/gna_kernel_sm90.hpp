// Hopper GNA forward kernel: one producer warpgroup (one elected thread issues every TMA load) and two consumer
// warpgroups of 64 query rows each, over the mainloop of gna_mainloop_sm90.hpp and the epilogue of
// gna_epilogue_sm90.hpp.
//
// Persistent (kPersistent): one CTA per SM (or fewer, `max_ctas`) walks its work tiles (gna_tile_schedule.hpp). The
// producer runs ahead into the next tile (its Q halves sit in their own stages, its first K/V
// tiles in the KV ring), and each consumer warpgroup runs all its tiles as one pipelined stream of KV steps, so a
// tile's start and end (first-load latency, first and last products, epilogue) overlap its neighbours' work. Without
// it each CTA does one tile; the hardware then schedules CTAs, which balances tiles of uneven cost (masked borders).
#pragma once

#include "cutlass/arch/reg_reconfig.h"
#include "cutlass/cutlass.h"
#include "cutlass/pipeline/pipeline.hpp"

#include "gna_tile_box.hpp"
#include "gna_tile_schedule.hpp"

namespace gna {

template <class Mainloop, class Epilogue, bool kPersistent>
struct KernelSm90 {
  static constexpr int kMmaWarpGroups = Mainloop::NumMmaWarpGroups;
  static constexpr int MaxThreadsPerBlock = (kMmaWarpGroups + 1) * cutlass::NumThreadsPerWarpGroup;
  static constexpr int MinBlocksPerMultiprocessor = 1;
  // setmaxnreg: the producer keeps a few registers, the consumers take the rest of the launch allocation
  // (168 per thread for 384 threads). The one-tile build's consumers run 1-2% faster on border problems with 240
  // (bench/results/kernel_variants_softmax_chains_h200_2026-12-02.json); the persistent build measured no better with
  // 240 and its producer, which walks many tiles, keeps more.
  static constexpr uint32_t kProducerRegisters = kPersistent ? 56 : 24;
  static constexpr uint32_t kConsumerRegisters = kPersistent ? 224 : 240;
  static_assert(kProducerRegisters + kMmaWarpGroups * kConsumerRegisters <=
                    (kMmaWarpGroups + 1) * (65536 / MaxThreadsPerBlock / 8 * 8),
                "register budget exceeds the launch allocation");
  static_assert(Mainloop::StageCountQ % kMmaWarpGroups == 0, "each warpgroup owns every kMmaWarpGroups-th Q stage");

  using PipelineKV = typename Mainloop::MainloopPipeline;
  using PipelineQ = typename Mainloop::MainloopPipelineQ;
  // The producer works out each tile's box for its own loads and hands it to the consumer warpgroups through shared
  // memory (a two-slot pipeline), so their tile start is a few shared-memory loads instead of the tile arithmetic.
  static constexpr int kTileSlots = 2;
  using PipelineTiles = cutlass::PipelineAsync<kTileSlots>;
  struct TileSlot {
    TileCoord at;
    TileBox box;
    int extra_keys;  // valid extra tokens of the tile's batch entry (Mainloop::extra_keys)
  };

  struct SharedStorage {
    typename Mainloop::SharedStorage tensors;
    alignas(16) typename PipelineKV::SharedStorage kv;
    alignas(16) typename PipelineQ::SharedStorage q;
    alignas(16) typename PipelineTiles::SharedStorage tiles;
    alignas(16) TileSlot tile_slot[kTileSlots];
  };
  static constexpr int SharedStorageSize = sizeof(SharedStorage);
  static_assert(SharedStorageSize <= 227 * 1024, "shared memory exceeds what one Hopper CTA may take");

  struct Params {
    typename Mainloop::Params mainloop;
    typename Epilogue::Params epilogue;
    TileSchedule schedule;
  };

  static dim3 grid_shape(Params const& p, int sm_count) { return dim3(p.schedule.ctas(kPersistent, sm_count), 1, 1); }

  // Keeps the compiler from moving shared-memory accesses across the tile pipeline's barrier operations (CUTLASS's
  // mbarrier asm declares no memory effects); the barriers order them for the hardware.
  CUTLASS_DEVICE static void compiler_fence() { asm volatile("" ::: "memory"); }

  // A consumer warpgroup's view of its CTA's work tiles (`count` of them), in the producer's order: `next(at,
  // extra_keys)` sets the next one's coordinates and valid extra tokens and returns its box, which stays in shared
  // memory until the following call (the mainloop copies it into registers).
  struct WorkTiles {
    int count;
    PipelineTiles* pipeline;
    TileSlot const* slots;
    typename PipelineTiles::PipelineState read;
    bool holding;  // a slot is held (after the first call)

    CUTLASS_DEVICE TileBox const& next(TileCoord& at, int& extra_keys) {
      if (holding) {
        compiler_fence();  // the held slot's reads come before its release
        pipeline->consumer_release(read);
        ++read;
      }
      holding = true;
      pipeline->consumer_wait(read);
      compiler_fence();  // the slot is read after the wait
      at = slots[read.index()].at;
      extra_keys = slots[read.index()].extra_keys;
      return slots[read.index()].box;
    }
  };

  CUTLASS_DEVICE void operator()(Params const& params, char* smem) {
    auto& storage = *reinterpret_cast<SharedStorage*>(smem);
    int warp_group = cutlass::canonical_warp_group_idx();
    bool load_warp = warp_group == 0 && cutlass::canonical_warp_idx_sync() == 0;
    bool leader = load_warp && cute::elect_one_sync();
    if (leader) Mainloop::prefetch_tma_descriptors(params.mainloop);

    typename PipelineKV::Params kv_params;
    kv_params.transaction_bytes = Mainloop::kKVLoadBytes;
    kv_params.is_leader = leader;
    kv_params.num_consumers = kMmaWarpGroups * cutlass::NumThreadsPerWarpGroup;
    typename PipelineQ::Params q_params;
    q_params.transaction_bytes = Mainloop::kQLoadBytes;
    q_params.is_leader = leader;
    q_params.num_consumers = cutlass::NumThreadsPerWarpGroup;  // each Q stage belongs to one warpgroup
    if (load_warp) {
      kv_params.role = PipelineKV::ThreadCategory::Producer;
      q_params.role = PipelineQ::ThreadCategory::Producer;
    } else if (warp_group > 0) {
      kv_params.role = PipelineKV::ThreadCategory::Consumer;
      q_params.role = PipelineQ::ThreadCategory::Consumer;
    }
    PipelineKV pipeline_kv(storage.kv, kv_params, cute::Shape<cute::_1, cute::_1, cute::_1>{});
    PipelineQ pipeline_q(storage.q, q_params, cute::Shape<cute::_1, cute::_1, cute::_1>{});
    typename PipelineTiles::Params tiles_params;
    tiles_params.producer_arv_count = 1;  // the leader thread
    tiles_params.consumer_arv_count = kMmaWarpGroups * cutlass::NumThreadsPerWarpGroup;
    tiles_params.role = load_warp        ? PipelineTiles::ThreadCategory::Producer
                        : warp_group > 0 ? PipelineTiles::ThreadCategory::Consumer
                                         : PipelineTiles::ThreadCategory::NonParticipant;
    PipelineTiles pipeline_tiles(storage.tiles, tiles_params);
    __syncthreads();  // barrier initialization is visible to every thread

    int step = kPersistent ? int(gridDim.x) : params.schedule.tiles();
    Mainloop mainloop;
    if (warp_group == 0) {
      cutlass::arch::warpgroup_reg_dealloc<kProducerRegisters>();
      if (!leader) return;  // one thread issues every load
      auto kv_write = cutlass::make_producer_start_state<PipelineKV>();
      auto q_write = cutlass::make_producer_start_state<PipelineQ>();
      auto tile_write = cutlass::make_producer_start_state<PipelineTiles>();
      CUTLASS_PRAGMA_NO_UNROLL
      for (auto tile = params.schedule.of(blockIdx.x, step); tile.valid(); tile.advance()) {
        TileCoord at = params.schedule.coord(tile.tile);
        TileBox box = TileBox::make(params.mainloop.tiles, at.q_linear);
        int extra_keys = Mainloop::extra_keys(params.mainloop, at.batch);
        pipeline_tiles.producer_acquire(tile_write);
        storage.tile_slot[tile_write.index()] = TileSlot{at, box, extra_keys};
        compiler_fence();  // written before the arrival that publishes it
        pipeline_tiles.producer_commit(tile_write);
        ++tile_write;
        mainloop.load(at, box, extra_keys, params.mainloop, pipeline_kv, kv_write, pipeline_q, q_write,
                      storage.tensors);
      }
    } else {
      cutlass::arch::warpgroup_reg_alloc<kConsumerRegisters>();
      int wg = warp_group - 1;
      typename Mainloop::PipelineState kv_read;
      typename Mainloop::PipelineStateQ q_read;
      q_read.advance(wg);
      Epilogue epilogue;
      WorkTiles tiles{kPersistent ? params.schedule.of(blockIdx.x, step).count() : 1, &pipeline_tiles,
                      storage.tile_slot, {}, false};
      mainloop.compute(tiles, wg, params.mainloop, pipeline_kv, kv_read, pipeline_q, q_read, storage.tensors,
                       [&](TileCoord const& at, auto const& acc, auto const& lse, auto* staging) {
                         epilogue(at, wg, acc, lse, staging, params.epilogue);
                       },
                       [] { Epilogue::wait_staging_read(); });
    }
  }
};

}  // namespace gna
