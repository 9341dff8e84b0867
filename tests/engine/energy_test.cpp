// Measured energy (DESIGN.md section 5): the split of a cumulative counter over jobs in
// windows (engine/energy_split.hpp) with a fake clock, the weights the scheduler gives
// each job's work (0.2 per prefilled token, 1 per decoded one) through the real
// scheduler, the engine's plumbing with an injected counter, and NVML's loader on a
// machine without it and against a fake libnvidia-ml (engine/nvml_energy.hpp,
// tests/engine/fake_nvml.cpp).
#include <doctest/doctest.h>

#include <dlfcn.h>

#include <atomic>
#include <future>
#include <numeric>

#include "engine/energy_split.hpp"
#include "engine/engine.hpp"
#include "engine/nvml_energy.hpp"
#include "tests/engine/fake_nvml.hpp"
#include "tests/engine/tiny_engine.hpp"

using namespace reprise::engine;
using namespace reprise::engine::test;

namespace {

// A counter that moves by `step_mj` at every read (1 J by default): each window then
// holds exactly the joules of the readings in it, whatever the timing.
struct FakeCounter : EnergyCounter {
    std::atomic<uint64_t> next{5000};
    uint64_t step_mj = 1000;
    std::atomic<int> reads{0};
    std::atomic<bool> broken{false};
    bool read_mj(uint64_t* mj) override {
        if (broken) return false;
        ++reads;
        *mj = next.fetch_add(step_mj);
        return true;
    }
};

TinyEngine& tiny() {
    static TinyEngine t = TinyEngine::make(tiny_shape(3, 512, 21, "energy-test"));
    return t;
}

// The tests' engine options: the tiny model, 2 threads, a 256-token context.
EngineOptions tiny_options() {
    EngineOptions eo;
    eo.model_path = tiny().path;
    eo.threads = 2;
    eo.context = 256;
    return eo;
}

}  // namespace

TEST_CASE("energy split: a window closes once 200 ms have passed and splits its joules by the units") {
    EnergySplit s;  // 0.2 s
    CHECK(s.wants_reading(0.0));
    s.reading(0.0, 1000);  // opens
    CHECK(s.window_open());
    s.add(1, 1.0);
    s.add(2, 3.0);
    CHECK_FALSE(s.wants_reading(0.1));
    s.reading(0.1, 1500);  // too young: nothing closes
    CHECK(s.windows() == 0);
    CHECK(s.rate() < 0);
    s.add(1, 1.0);
    s.add(2, 1.0);
    CHECK(s.wants_reading(0.2));
    s.reading(0.2, 7000);  // 6 J over 6 units: 1 J per unit
    CHECK(s.windows() == 1);
    CHECK(s.measured_j() == doctest::Approx(6.0));
    CHECK(s.rate() == doctest::Approx(1.0));
    CHECK(s.window_open());  // the next one opened at the same reading
    CHECK_FALSE(s.wants_reading(0.35));
    CHECK(s.finish(1) == doctest::Approx(2.0));
    CHECK(s.finish(2) == doctest::Approx(4.0));
}

TEST_CASE("energy split: a job finishing mid-window pays its open units at the last closed rate") {
    EnergySplit s(0.2);
    s.reading(0.0, 0);
    s.add(1, 4.0);
    s.reading(0.25, 4000);  // rate 1 J/unit
    s.add(3, 2.0);
    s.add(4, 2.0);
    // Job 3 ends before the window closes: 2 units at the last rate.
    CHECK(s.finish(3) == doctest::Approx(2.0));
    s.add(4, 1.0);
    s.reading(0.5, 14000);  // 10 J over 5 units (job 3's included): 2 J/unit
    CHECK(s.rate() == doctest::Approx(2.0));
    CHECK(s.finish(4) == doctest::Approx(6.0));
    CHECK(s.finish(1) == doctest::Approx(4.0));
    CHECK(s.measured_j() == doctest::Approx(14.0));
    // Attributed 2 + 6 + 4 = 12 of 14 J: job 3's 2 units x (2 - 1) J of drift, not charged twice.
}

TEST_CASE("energy split: before any window closed, a job's energy is not measured") {
    EnergySplit s(0.2);
    CHECK(s.finish(9) < 0);  // unknown job, no rate
    s.reading(0.0, 0);
    s.add(1, 5.0);
    s.reading(0.1, 500);
    CHECK(s.finish(1) < 0);
    s.idle();
    CHECK(s.windows() == 0);
    CHECK(s.measured_j() == 0);
}

TEST_CASE("energy split: idle time between bursts is charged to nobody") {
    EnergySplit s(0.2);
    s.reading(0.0, 0);
    s.add(1, 1.0);
    s.reading(0.25, 1000);  // 1 J/unit
    s.add(1, 1.0);
    s.reading(0.3, 1100);  // too young
    s.idle();              // the 50 ms window is discarded; job 1's unit costs the last rate
    CHECK_FALSE(s.window_open());
    CHECK(s.discarded() == 1);
    CHECK(s.finish(1) == doctest::Approx(2.0));
    // 10 s idle: the counter climbs to 50 J. The next burst opens a new window there.
    CHECK(s.wants_reading(10.0));
    s.reading(10.0, 50000);
    s.add(2, 1.0);
    s.reading(10.25, 50500);
    CHECK(s.windows() == 2);
    CHECK(s.finish(2) == doctest::Approx(0.5));
    CHECK(s.measured_j() == doctest::Approx(1.5));  // 1 J + 0.5 J, not the 48.9 J of the idle gap
    // An idle with nothing in the open window is not a discarded window.
    s.idle();
    CHECK(s.discarded() == 1);
}

TEST_CASE("energy split: failed reads leave the window open - a counter going back discards it") {
    EnergySplit s(0.2);
    s.reading(0.0, 0);
    s.add(1, 1.0);
    s.read_failed();  // at 0.25 s: no reading, nothing closes
    CHECK(s.read_failures() == 1);
    CHECK(s.windows() == 0);
    s.add(1, 1.0);
    s.reading(0.3, 2000);  // closes: 2 J over 2 units
    CHECK(s.rate() == doctest::Approx(1.0));
    CHECK(s.finish(1) == doctest::Approx(2.0));
    s.idle();
    // The next burst's opening read fails: its units are measured at the last rate.
    s.read_failed();
    s.add(2, 3.0);
    CHECK(s.finish(2) == doctest::Approx(3.0));
    // The counter restarts lower (a driver reload): the window's joules are unknown.
    s.reading(1.0, 9000);
    s.add(3, 1.0);
    s.reading(1.5, 100);
    CHECK(s.discarded() == 1);
    CHECK(s.windows() == 1);
    s.add(3, 1.0);
    s.reading(2.0, 4100);  // 4 J over 1 unit
    CHECK(s.rate() == doctest::Approx(4.0));
    CHECK(s.finish(3) == doctest::Approx(4.0 + 1.0 * 4.0));  // its discarded unit at the last rate
    // Without any closed window, a counter that never reads leaves everything unmeasured.
    EnergySplit never(0.2);
    never.read_failed();
    never.add(1, 1.0);
    CHECK(never.finish(1) < 0);
}

TEST_CASE("energy split: the scheduler weighs 0.2 per prefilled token and 1 per decoded token") {
    // Every step closes its window (minimum 0) and the counter moves 1 J per read, so
    // every step is worth 1 J, split over the jobs by the work each did in it.
    // Step 1 prefills A alone (50 tokens) and samples its first token. Step 2 decodes A
    // (1 unit) and prefills B (15 tokens: 3 units). Steps 3-10 decode A's one sample
    // (1) and B's two (2); step 11 B's alone.
    FakeCounter counter;
    SchedulerOptions o;
    o.n_ctx = 512;
    Scheduler s(*tiny().model, *tiny().tokenizer, {}, o);  // no end-of-generation token: 10 tokens each
    s.measure_energy(&counter, 0.0);
    auto a = std::make_shared<JobOutcome>(), b = std::make_shared<JobOutcome>();
    s.add(job(1, 10, 0.0f, 1), collect(a, 1), random_prompt(1, 50));
    s.step();
    s.add(job(2, 10, 1.0f, 2), collect(b, 2), random_prompt(2, 15));
    run_to_idle(s);
    REQUIRE(a->ok);
    REQUIRE(b->ok);
    for (auto* out : {a.get(), b.get()})
        for (auto& sample : out->completion.samples) REQUIRE(sample.completion_tokens == 10);
    CHECK(s.counters().steps == 11);
    CHECK(counter.reads == 12);  // the burst's opening read, then one per step
    REQUIRE(s.energy() != nullptr);
    CHECK(s.energy()->windows() == 11);
    CHECK(s.energy()->measured_j() == doctest::Approx(11.0));
    CHECK(a->completion.energy_j == doctest::Approx(1.0 + 1.0 / 4 + 8 * (1.0 / 3)));
    CHECK(b->completion.energy_j == doctest::Approx(3.0 / 4 + 8 * (2.0 / 3) + 1.0));

    // A second burst after the idle: a new window opens, nothing of the gap is charged.
    counter.next += 1'000'000;
    auto c = std::make_shared<JobOutcome>();
    s.add(job(1, 4, 0.0f, 3), collect(c, 1), random_prompt(3, 5));
    run_to_idle(s);
    REQUIRE(c->ok);
    CHECK(c->completion.energy_j == doctest::Approx(4.0));  // 4 steps alone, 1 J each
    CHECK(s.energy()->measured_j() == doctest::Approx(15.0));
}

TEST_CASE("energy split: with speculation and a cancelled job, completions share the closed windows exactly") {
    FakeCounter counter;
    SchedulerOptions o;
    o.n_ctx = 512;
    o.exit_layer = 1;
    o.draft_tokens = 3;
    Scheduler s(*tiny().model, *tiny().tokenizer, {}, o);
    REQUIRE(s.speculating());
    s.measure_energy(&counter, 0.0);
    std::vector<std::shared_ptr<JobOutcome>> outs;
    for (int i = 0; i < 4; ++i) {
        outs.push_back(std::make_shared<JobOutcome>());
        s.add(job(1 + i % 2, 6 + 3 * i, i % 2 ? 0.8f : 0.0f, 40 + uint64_t(i)), collect(outs.back(), 1 + i % 2),
              random_prompt(40 + uint64_t(i), 8 + 5 * i));
    }
    auto cancelled = std::make_shared<JobOutcome>();
    Submission gone = job(2, 50, 1.0f, 99);
    gone.cancelled = std::make_shared<std::atomic<bool>>(false);
    s.add(gone, collect(cancelled, 2), random_prompt(99, 20));
    s.step();
    s.step();
    gone.cancelled->store(true);
    run_to_idle(s);
    REQUIRE_FALSE(cancelled->ok);
    double sum = 0;
    for (auto& out : outs) {
        REQUIRE(out->ok);
        CHECK(out->completion.energy_j > 0);
        sum += out->completion.energy_j;
    }
    CHECK(s.counters().drafted > 0);
    // Every window closed after its step: the completions got all of it but the
    // cancelled job's share of its two steps.
    CHECK(s.energy()->windows() == s.counters().steps);
    CHECK(sum < s.energy()->measured_j());
    CHECK(sum > s.energy()->measured_j() - 2.0);
}

TEST_CASE("energy: an engine with an injected counter gives each completion its measured joules") {
    auto counter = std::make_shared<FakeCounter>();
    EngineOptions eo = tiny_options();
    eo.energy_counter = counter;
    eo.energy_window_s = 0.0;  // every step closes its window: the split is exact
    auto loaded = Engine::load(eo);
    REQUIRE_MESSAGE(loaded.ok(), loaded.error());
    Engine& e = *loaded.value();
    CHECK(e.info().energy_method == "measured");

    std::vector<std::promise<Completion>> done(5);
    for (int i = 0; i < 5; ++i) {
        Submission sub = job(1 + i % 3, 5 + 4 * i, 0.7f, 100 + uint64_t(i));
        sub.use_tokens = true;
        sub.tokens = random_prompt(100 + uint64_t(i), 6 + 7 * i);
        Callbacks cb;
        // On the engine thread: CHECKs only (a REQUIRE would throw there).
        cb.on_done = [&done, &e, i](const Completion* c, const EngineError* err) {
            CHECK_MESSAGE(c != nullptr, (err ? err->message : ""));
            Completion got = c ? *c : Completion{};
            // Set before on_done, and the stats already count its windows.
            CHECK(got.energy_j > 0);
            CHECK(e.stats().energy_measured_j >= got.energy_j);
            done[size_t(i)].set_value(std::move(got));
        };
        REQUIRE_FALSE(e.submit(std::move(sub), std::move(cb)).has_value());
    }
    double sum = 0;
    for (auto& d : done) sum += d.get_future().get().energy_j;
    const EngineStats st = e.stats();
    // With a window per step and no job ending mid-window, the completions' shares add
    // up to the closed windows' joules (1 J per step) up to rounding: tolerance 1e-9.
    CHECK(st.energy_windows == st.steps);
    CHECK(st.energy_measured_j == doctest::Approx(double(st.steps)));
    CHECK(sum == doctest::Approx(st.energy_measured_j).epsilon(1e-9));
}

TEST_CASE("energy: an engine whose windows never close, or without a counter, measures nothing") {
    SUBCASE("windows longer than the run") {
        auto counter = std::make_shared<FakeCounter>();
        EngineOptions eo = tiny_options();
        eo.energy_counter = counter;
        eo.energy_window_s = 1000.0;
        auto e = Engine::load(eo);
        REQUIRE(e.ok());
        std::promise<double> j;
        Submission sub = job(2, 8, 0.0f, 7);
        sub.text = "hello";
        Callbacks cb;
        cb.on_done = [&j](const Completion* c, const EngineError*) { j.set_value(c ? c->energy_j : 1e9); };
        REQUIRE_FALSE((*e)->submit(std::move(sub), std::move(cb)).has_value());
        CHECK(j.get_future().get() < 0);
        CHECK((*e)->info().energy_method == "measured");
        CHECK((*e)->stats().energy_windows == 0);
        CHECK(counter->reads >= 1);  // the window was opened
    }
    SUBCASE("no counter") {
        for (Device d : {Device::Auto, Device::Cpu}) {
            EngineOptions eo = tiny_options();
            eo.device = d;
            auto e = Engine::load(eo);
            REQUIRE_MESSAGE(e.ok(), e.error());
            const EngineInfo& info = (*e)->info();
            if (!cuda_built()) CHECK(info.device == "cpu");
            if (info.device != "cpu") continue;  // a GPU machine: its own tests cover it
            CHECK(info.device_name.empty());
            CHECK(info.energy_method == "estimated");
            // Auto says why it is not on a GPU; a CPU load asked for it.
            CHECK(info.device_note.empty() == (d == Device::Cpu));
            std::promise<double> j;
            Submission sub = job(1, 4, 0.0f, 8);
            sub.text = "hello";
            Callbacks cb;
            cb.on_done = [&j](const Completion* c, const EngineError*) { j.set_value(c ? c->energy_j : 1e9); };
            REQUIRE_FALSE((*e)->submit(std::move(sub), std::move(cb)).has_value());
            CHECK(j.get_future().get() < 0);
            CHECK((*e)->stats().energy_measured_j == 0);
        }
    }
}

TEST_CASE("energy: device cuda without a usable GPU fails the load with the reason") {
    EngineOptions eo = tiny_options();
    eo.device = Device::Cuda;
    auto e = Engine::load(eo);
    if (!cuda_built()) {
        REQUIRE_FALSE(e.ok());
        CHECK(e.error().find("cuda") != std::string::npos);
        CHECK(e.error().find("no CUDA backend") != std::string::npos);
    } else if (e.ok()) {
        CHECK((*e)->info().device == "cuda");
        CHECK_FALSE((*e)->info().device_name.empty());
    }
}

TEST_CASE("nvml energy: without libnvidia-ml the counter fails to open with the reason, no crash") {
    void* lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    auto nvml = NvmlEnergy::open("");
    if (!lib) {
        REQUIRE_FALSE(nvml.ok());
        CHECK(nvml.error().find("libnvidia-ml.so.1") != std::string::npos);
        CHECK_FALSE(NvmlEnergy::open("00000000:19:00.0").ok());
        return;
    }
    dlclose(lib);
    // A machine with the driver: index 0 opens unless it has no GPU; the counter only grows.
    if (!nvml.ok()) {
        CHECK(nvml.error().find("NVML") != std::string::npos);
        return;
    }
    uint64_t a = 0, b = 0;
    REQUIRE((*nvml)->read_mj(&a));
    REQUIRE((*nvml)->read_mj(&b));
    CHECK(b >= a);
    CHECK_FALSE(NvmlEnergy::open("00000000:FF:1F.7").ok());  // no such board
}

TEST_CASE("nvml energy: the loader against a fake libnvidia-ml - board lookup, errors, counter, shutdown") {
    // The test's own handle keeps the fake loaded (and its state) between opens.
    void* lib = dlopen(REPRISE_FAKE_NVML, RTLD_NOW | RTLD_LOCAL);
    REQUIRE_MESSAGE(lib != nullptr, dlerror());
    auto state_fn = reinterpret_cast<FakeNvmlState* (*)()>(dlsym(lib, "fake_nvml_state"));
    REQUIRE(bool(state_fn));
    FakeNvmlState& st = *state_fn();
    {
        auto by_index = NvmlEnergy::open("", REPRISE_FAKE_NVML);
        REQUIRE_MESSAGE(by_index.ok(), by_index.error());
        CHECK(st.inits == 1);
        uint64_t a = 0, b = 0;
        REQUIRE((*by_index)->read_mj(&a));
        REQUIRE((*by_index)->read_mj(&b));
        CHECK(b == a + 250);
        // The counter stops answering: a failed read, not a crash.
        st.energy_result = 3;
        CHECK_FALSE((*by_index)->read_mj(&a));
        st.energy_result = 0;
    }
    CHECK(st.shutdowns == 1);  // the destructor shuts NVML down
    auto by_bus = NvmlEnergy::open("00000000:19:00.0", REPRISE_FAKE_NVML);
    REQUIRE_MESSAGE(by_bus.ok(), by_bus.error());
    auto elsewhere = NvmlEnergy::open("00000000:FF:1F.7", REPRISE_FAKE_NVML);
    REQUIRE_FALSE(elsewhere.ok());
    CHECK(elsewhere.error() == "NVML: device 00000000:FF:1F.7: nvmlDeviceGetHandleByPciBusId_v2: Not Found");
    st.energy_result = 3;
    auto unsupported = NvmlEnergy::open("", REPRISE_FAKE_NVML);
    REQUIRE_FALSE(unsupported.ok());
    CHECK(unsupported.error() == "NVML: nvmlDeviceGetTotalEnergyConsumption: Not Supported");
    st.energy_result = 0;
    st.init_result = 9;
    auto no_driver = NvmlEnergy::open("", REPRISE_FAKE_NVML);
    REQUIRE_FALSE(no_driver.ok());
    CHECK(no_driver.error() == "NVML: nvmlInit_v2: Driver Not Loaded");
    st.init_result = 0;
    // Every successful init was shut down again, failed opens included; by_bus is still open.
    CHECK(st.shutdowns == st.inits - 2);  // by_bus, and the init that failed
    // A library that is not NVML.
    auto not_nvml = NvmlEnergy::open("", "libm.so.6");
    REQUIRE_FALSE(not_nvml.ok());
    CHECK(not_nvml.error().find("lacks nvmlInit_v2") != std::string::npos);

    // The engine reading it: every step closes its window at 0.25 J per read.
    EngineOptions eo = tiny_options();
    eo.energy_counter = std::move(by_bus.value());
    eo.energy_window_s = 0.0;
    auto e = Engine::load(eo);
    REQUIRE(e.ok());
    std::promise<double> j;
    Submission sub = job(3, 6, 0.9f, 77);
    sub.text = "measured";
    Callbacks cb;
    cb.on_done = [&j](const Completion* c, const EngineError*) { j.set_value(c ? c->energy_j : -2); };
    REQUIRE_FALSE((*e)->submit(std::move(sub), std::move(cb)).has_value());
    const double joules = j.get_future().get();
    const EngineStats stats = (*e)->stats();
    CHECK(joules == doctest::Approx(0.25 * double(stats.steps)));
    CHECK(stats.energy_measured_j == doctest::Approx(joules));
    e.value().reset();  // the engine, and with the options' copy the counter, goes
    eo.energy_counter.reset();
    CHECK(st.shutdowns == st.inits - 1);
    dlclose(lib);
}
