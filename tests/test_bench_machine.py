"""bench/machine.py: the CPU facts and family name that pick the bench's results file, from fixed
/proc/cpuinfo texts (only the first processor block counts; a missing /proc/cpuinfo gives "unknown")."""
import pytest


def load_machine():
    from bench import machine  # standard library only at import time: loads no numpy or torch
    return machine


def cpuinfo(vendor, family, model, name, flags):
    block = (f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\n"
             f"model name\t: {name}\nstepping\t: 1\nflags\t\t: fpu vme sse sse2 {flags}\nbogomips\t: 5200.00\n")
    return block + "\n" + block.replace("processor\t: 0", "processor\t: 1") + "\n"


XEON_AVX512 = cpuinfo("GenuineIntel", 6, 106, "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz",
                      "avx f16c avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni")
ZEN4 = cpuinfo("AuthenticAMD", 25, 17, "AMD EPYC 9R14 96-Core Processor",
               "avx2 avx512f avx512dq avx512ifma avx512cd avx512bw avx512vl avx512_bf16 avx512vbmi avx512_vnni")
ZEN3 = cpuinfo("AuthenticAMD", 25, 1, "AMD EPYC 7R13 Processor", "avx f16c avx2 bmi2 vaes")
INTEL_AVX2 = cpuinfo("GenuineIntel", 6, 158, "Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz", "avx f16c avx2 bmi2")


@pytest.mark.parametrize("text, vendor, family, model, name, extensions, slug", [
    (XEON_AVX512, "GenuineIntel", 6, 106, "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz",
     ["avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni"], "intel-avx512"),
    (ZEN4, "AuthenticAMD", 25, 17, "AMD EPYC 9R14 96-Core Processor",
     ["avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16"], "amd-zen4"),
    (ZEN3, "AuthenticAMD", 25, 1, "AMD EPYC 7R13 Processor", ["avx2"], "amd-zen3"),
    (INTEL_AVX2, "GenuineIntel", 6, 158, "Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz", ["avx2"], "intel-avx2"),
    ("", None, None, None, None, [], "unknown"),
])
def test_cpu_facts_and_family(text, vendor, family, model, name, extensions, slug):
    machine = load_machine()
    facts = machine.cpu_facts(text)
    assert facts == {"vendor": vendor, "model_name": name, "family": family, "model": model,
                     "vector_extensions": extensions}
    assert machine.cpu_family(facts) == slug


def test_only_the_first_processor_block_counts():
    machine = load_machine()
    first, _, rest = ZEN3.partition("\n\n")
    mixed = "\n" + first + "\n\n" + rest.replace("avx2", "avx2 avx512f")  # a leading blank line, then two blocks
    assert machine.cpu_family(machine.cpu_facts(mixed)) == "amd-zen3"


@pytest.mark.parametrize("vendor, family, flags, slug", [
    ("AuthenticAMD", 26, "avx2 avx512f", "amd-zen5"),
    ("AuthenticAMD", 23, "avx2", "amd-zen2"),
    ("AuthenticAMD", 21, "avx", "amd-21"),
    ("GenuineIntel", 6, "avx", "intel-6"),
    ("HygonGenuine", 24, "avx2", "hygon-24"),
    ("Some Vendor!", 7, "", "somevendor-7"),  # a file name: lowercase letters, digits and dashes only
])
def test_other_families_get_vendor_and_family_number(vendor, family, flags, slug):
    machine = load_machine()
    assert machine.cpu_family(machine.cpu_facts(cpuinfo(vendor, family, 1, "x", flags))) == slug


def test_machine_info_names_this_machine():
    machine = load_machine()
    info = machine.machine_info()
    assert info["cpu_family"] == machine.cpu_family(machine.cpu_facts(machine.read_cpuinfo()))
    assert {"cpu", "vector_extensions", "cores", "openblas_kernels", "numpy", "torch", "python", "kernel",
            "l2_cache_bytes", "conv_chunk_bytes"} <= set(info)
    assert info["cores"] >= 1 and info["cpu"]
