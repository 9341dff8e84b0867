#pragma once
// The state of the fake NVML (fake_nvml.cpp), which the test reads and steers through
// the library's fake_nvml_state().
struct FakeNvmlState {
    int inits = 0, shutdowns = 0;
    int init_result = 0;    // what nvmlInit_v2 returns (0 = NVML_SUCCESS)
    int energy_result = 0;  // what nvmlDeviceGetTotalEnergyConsumption returns
    unsigned long long mj = 1'000'000;
};
