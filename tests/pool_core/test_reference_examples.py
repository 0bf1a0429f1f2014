"""Every usage example of reference/eventlet-thread-pools.md, run unchanged against pool_core.

The examples are copied with their lost indentation restored and `import eventlet` spelled
`import pool_core as eventlet`; `test_the_examples_here_are_the_reference_text` proves nothing else
changed. They keep their own sleep durations, so each runs in its own Python process and all of them
are started at once (the module takes as long as the slowest example, about five seconds).
"""

import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: The reference page lives in the shared/ folder beside the checkout (CI lays one there), else at /work/shared.
_PAGE = Path("reference/eventlet-thread-pools.md")
REFERENCE = next((d / _PAGE for d in (REPO.parent / "shared", Path("/work/shared")) if (d / _PAGE).exists()),
                 REPO.parent / "shared" / _PAGE)  # fmt: skip
RANDOM_SEED = 94  # fixes the pile example's random delays: well apart, and not in spawn order

BASIC_POOL = '''
import pool_core as eventlet
def worker(task_id, duration):
    """Simulate some work"""
    print(f"Task {task_id} starting")
    eventlet.sleep(duration)
    print(f"Task {task_id} completed")
    return f"Result {task_id}"

# Create a pool with max 5 concurrent greenthreads
pool = eventlet.GreenPool(5)

# Spawn multiple tasks
results = []
for i in range(10):
    gt = pool.spawn(worker, i, 1.0)
    results.append(gt)

# Wait for all tasks to complete
pool.waitall()

# Collect results
final_results = [gt.wait() for gt in results]
print(f"All results: {final_results}")
'''

MAP_OPERATIONS = '''
import pool_core as eventlet
def fetch_url(url):
    """Simulate fetching a URL"""

    # In real usage, would use eventlet.green.urllib or similar
    eventlet.sleep(0.5) # Simulate network delay
    return f"Content from {url}"
urls = [
    "http://example.com/page1",
    "http://example.com/page2",
    "http://example.com/page3",
    "http://example.com/page4",
    "http://example.com/page5"
]
pool = eventlet.GreenPool(3) # Max 3 concurrent requests

# Use imap to process URLs and get results in order
for result in pool.imap(fetch_url, urls):
    print(f"Got: {result}")

# Use starmap with argument tuples
def fetch_with_headers(url, headers):
    eventlet.sleep(0.3)
    return f"Content from {url} with headers {headers}"
url_header_pairs = [
    ("http://api.example.com/users", {"Authorization": "Bearer token1"}),
    ("http://api.example.com/posts", {"Authorization": "Bearer token2"}),
    ("http://api.example.com/comments", {"Authorization": "Bearer token3"})
]
for result in pool.starmap(fetch_with_headers, url_header_pairs):
    print(f"API result: {result}")
'''

GREEN_PILE = '''
import pool_core as eventlet
def fetch_data(source):
    """Simulate fetching data from different sources"""
    import random
    delay = random.uniform(0.1, 2.0) # Random delay
    eventlet.sleep(delay)
    return f"Data from {source} (took {delay:.2f}s)"

# Create a pile for managing multiple I/O operations
pile = eventlet.GreenPile(10)

# Spawn multiple data fetches
sources = ["database", "api", "cache", "file", "network"]
for source in sources:
    pile.spawn(fetch_data, source)

# Process results as they become available (not in original order)
print("Processing results as they arrive:")
for result in pile:
    print(f"Received: {result}")
print("All operations completed")
'''

DYNAMIC_RESIZING = '''
import pool_core as eventlet
def monitoring_task():
    """Simulate a monitoring task"""
    eventlet.sleep(1.0)
    return "Monitor check complete"
pool = eventlet.GreenPool(2) # Start with small pool

# Spawn some initial tasks
for i in range(3):
    pool.spawn(monitoring_task)
print(f"Pool stats - Running: {pool.running()}, Free: {pool.free()}")

# Increase pool size based on demand
if pool.free() == 0:
    print("Pool full, increasing size")
    pool.resize(5)
print(f"After resize - Running: {pool.running()}, Free: {pool.free()}")

# Spawn more tasks with increased capacity
for i in range(3, 7):
    pool.spawn(monitoring_task)

# Wait for completion
pool.waitall()
print("All monitoring tasks completed")
'''

PRODUCER_CONSUMER = '''
import pool_core as eventlet
def producer(pool, queue, num_items):
    """Produce items using a pool of workers"""
    def create_item(item_id):
        eventlet.sleep(0.1) # Simulate work
        return f"item_{item_id}"

    # Use pool to create items concurrently
    for i in range(num_items):
        gt = pool.spawn(create_item, i)

        # Put the greenthread in queue so consumer can wait for result
        queue.put(gt)
def consumer(queue, num_items):
    """Consume items as they're produced"""
    for _ in range(num_items):
        gt = queue.get() # Get the greenthread
        item = gt.wait() # Wait for the actual result
        print(f"Consumed: {item}")

# Set up producer-consumer with pool
production_pool = eventlet.GreenPool(5)
item_queue = eventlet.Queue()

# Start producer and consumer
eventlet.spawn(producer, production_pool, item_queue, 10)
eventlet.spawn(consumer, item_queue, 10)

# Let them run
eventlet.sleep(5)
'''

CHOOSING_POOL_SIZE = '''
import pool_core as eventlet

# For I/O-bound tasks (network, disk)
io_pool = eventlet.GreenPool(100) # Higher concurrency

# For CPU-bound tasks or resource-limited operations
cpu_pool = eventlet.GreenPool(10) # Lower concurrency

# For database connections (limited by DB connection pool)
db_pool = eventlet.GreenPool(20) # Match DB pool size
'''

ERROR_HANDLING = '''
import pool_core as eventlet
def risky_task(task_id):
    """Task that might fail"""
    if task_id % 3 == 0:
        raise ValueError(f"Task {task_id} failed!")
    return f"Success {task_id}"
pool = eventlet.GreenPool(5)
greenthreads = []

# Spawn tasks
for i in range(10):
    gt = pool.spawn(risky_task, i)
    greenthreads.append(gt)

# Collect results with error handling
results = []
for gt in greenthreads:
    try:
        result = gt.wait()
        results.append(result)
    except Exception as e:
        print(f"Task failed: {e}")
        results.append(None)
print(f"Successful results: {[r for r in results if r is not None]}")
'''

EXAMPLES = {
    "basic_pool": BASIC_POOL,
    "map_operations": MAP_OPERATIONS,
    "green_pile": GREEN_PILE,
    "dynamic_resizing": DYNAMIC_RESIZING,
    "producer_consumer": PRODUCER_CONSUMER,
    "choosing_pool_size": CHOOSING_POOL_SIZE,
    "error_handling": ERROR_HANDLING,
}

# Runs one example's text as a program, then reports (on stderr) how long it took and the size of every
# GreenPool it left in its namespace.
RUNNER = """
import random, sys, time
import pool_core
random.seed(int(sys.argv[2]))
namespace = {"__name__": "__main__"}
start = time.monotonic()
exec(compile(sys.argv[1], "<example>", "exec"), namespace)
print(f"ELAPSED {time.monotonic() - start:.3f}", file=sys.stderr)
for name, value in namespace.items():
    if isinstance(value, pool_core.GreenPool):
        print(f"POOL {name} size={value.size} running={value.running()}", file=sys.stderr)
"""


class Run:
    def __init__(self, process):
        self.process = process
        self._out = None

    def result(self):
        if self._out is None:
            stdout, stderr = self.process.communicate(timeout=40)
            self._out = (self.process.returncode, stdout, stderr)
        return self._out

    @property
    def lines(self):
        returncode, stdout, stderr = self.result()
        assert returncode == 0, stderr
        return stdout.splitlines()

    @property
    def elapsed(self):
        return float(re.findall(r"^ELAPSED (\S+)$", self.result()[2], re.M)[-1])

    @property
    def pools(self):
        return dict(re.findall(r"^POOL (\w+) (.*)$", self.result()[2], re.M))


@pytest.fixture(scope="module")
def runs():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    started = {
        name: Run(
            subprocess.Popen(
                [sys.executable, "-c", RUNNER, source, str(RANDOM_SEED)],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        for name, source in EXAMPLES.items()
    }
    yield started
    for run in started.values():
        if run.process.poll() is None:
            run.process.kill()
            run.process.wait()


def reference_examples():
    return re.findall(r"```python\n(.*?)```", REFERENCE.read_text(), re.S)


@pytest.mark.skipif(not REFERENCE.exists(), reason="the reference page is not available")
def test_the_examples_here_are_the_reference_text():
    flattened = [
        "\n".join(line.lstrip() for line in source.strip("\n").splitlines()).replace(
            "import pool_core as eventlet", "import eventlet"
        )
        for source in EXAMPLES.values()
    ]
    assert flattened == [block.rstrip("\n") for block in reference_examples()]


@pytest.mark.timeout(45)
def test_basic_pool_usage_runs_ten_one_second_tasks_five_at_a_time(runs):
    run = runs["basic_pool"]
    lines = run.lines
    assert lines[:5] == [f"Task {i} starting" for i in range(5)]
    assert lines[-1] == f"All results: {[f'Result {i}' for i in range(10)]}"
    body = lines[:-1]
    expected = [f"Task {i} {what}" for i in range(10) for what in ("starting", "completed")]
    assert sorted(body) == sorted(expected)
    for i in range(10):
        started = body.index(f"Task {i} starting")
        assert started < body.index(f"Task {i} completed")
        completed_before = sum(1 for line in body[:started] if line.endswith("completed"))
        assert completed_before >= i - 4  # never more than five running
    assert 1.9 <= run.elapsed <= 4.0


@pytest.mark.timeout(45)
def test_map_operations_print_results_in_input_order(runs):
    run = runs["map_operations"]
    headers = [f"{{'Authorization': 'Bearer token{i}'}}" for i in (1, 2, 3)]
    assert run.lines == [f"Got: Content from http://example.com/page{i}" for i in range(1, 6)] + [
        f"API result: Content from http://api.example.com/{path} with headers {header}"
        for path, header in zip(["users", "posts", "comments"], headers, strict=True)
    ]
    assert 1.25 <= run.elapsed <= 3.0  # two rounds of 0.5 s in a pool of 3, then one round of 0.3 s


@pytest.mark.timeout(45)
def test_green_pile_prints_results_in_completion_order(runs):
    run = runs["green_pile"]
    sources = ["database", "api", "cache", "file", "network"]
    rng = random.Random(RANDOM_SEED)
    delays = {source: rng.uniform(0.1, 2.0) for source in sources}
    by_completion = sorted(sources, key=delays.get)
    assert by_completion != sources  # the seed makes the order differ from the spawn order
    assert run.lines == (
        ["Processing results as they arrive:"]
        + [f"Received: Data from {s} (took {delays[s]:.2f}s)" for s in by_completion]
        + ["All operations completed"]
    )
    assert max(delays.values()) - 0.05 <= run.elapsed <= max(delays.values()) + 1.5


@pytest.mark.timeout(45)
def test_dynamic_resizing_prints_counts_that_follow_our_semantics(runs):
    """The third spawn into a pool of two blocks until a one-second task ends. Usually both first tasks
    end in the same hub turn, so the pool is not full and is not resized; if only one has ended, the
    pool is full and grows to five."""
    run = runs["dynamic_resizing"]
    lines = run.lines
    if lines[0] == "Pool stats - Running: 1, Free: 1":
        assert lines == [
            "Pool stats - Running: 1, Free: 1",
            "After resize - Running: 1, Free: 1",
            "All monitoring tasks completed",
        ]
        assert 3.9 <= run.elapsed <= 6.5  # rounds of two: [A, B], [C, 3], [4, 5], [6]
        assert run.pools == {"pool": "size=2 running=0"}
    else:
        assert lines == [
            "Pool stats - Running: 2, Free: 0",
            "Pool full, increasing size",
            "After resize - Running: 2, Free: 3",
            "All monitoring tasks completed",
        ]
        assert 1.9 <= run.elapsed <= 4.0  # [A, B], then [C, 3, 4, 5] and 6 as soon as B ends
        assert run.pools == {"pool": "size=5 running=0"}


@pytest.mark.timeout(45)
def test_producer_consumer_consumes_every_item_in_order(runs):
    run = runs["producer_consumer"]
    assert run.lines == [f"Consumed: item_{i}" for i in range(10)]
    assert 4.9 <= run.elapsed <= 7.0
    assert run.pools == {"production_pool": "size=5 running=0"}


@pytest.mark.timeout(45)
def test_choosing_pool_size_creates_the_three_pools(runs):
    run = runs["choosing_pool_size"]
    assert run.lines == []
    assert run.pools == {
        "io_pool": "size=100 running=0",
        "cpu_pool": "size=10 running=0",
        "db_pool": "size=20 running=0",
    }


@pytest.mark.timeout(45)
def test_error_handling_reports_each_failure_and_keeps_the_successes(runs):
    run = runs["error_handling"]
    assert run.lines == [
        "Task failed: Task 0 failed!",
        "Task failed: Task 3 failed!",
        "Task failed: Task 6 failed!",
        "Task failed: Task 9 failed!",
        "Successful results: ['Success 1', 'Success 2', 'Success 4', 'Success 5', 'Success 7', 'Success 8']",
    ]
