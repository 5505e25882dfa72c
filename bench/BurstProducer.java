// The burst benchmark's load generator (bench/bench_outage.py --producer java): a paced producer cheap
// enough that the bench measures the consumer, not its own producer.
//
//   java -cp <dir>:<kafka lib>/* BurstProducer BOOTSTRAP TOPIC EVENTS.jsonl KEYED PLAN [SHIFT]
//
// PLAN is "seconds:events_per_s,..." run one phase after another. Each record is the next line of
// EVENTS.jsonl (cycled) with its event id made unique exactly as the Python producer does
// ("event_id":"o... -> "event_id":"b<n>-...); KEYED 1 keys it by its service, 0 sends it unkeyed.
// SHIFT (seconds, default 0) moves the `ts` of the n-th cycle's records n * SHIFT later, so that event
// time keeps moving forward as in a real outage instead of repeating the file's minutes every cycle.
// Every 100 ms it prints "<epoch ms> <sent> <acknowledged>"; at the end, after a flush, "done <sent>
// <acknowledged> <failed>". It exits 1 if the broker refused a record.

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.Arrays;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.producer.Callback;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public final class BurstProducer {
    private static final byte[] ID = "\"event_id\":\"o".getBytes(StandardCharsets.US_ASCII);
    private static final byte[] NEW_ID = "\"event_id\":\"b".getBytes(StandardCharsets.US_ASCII);
    private static final byte[] SERVICE = "\"service\":\"".getBytes(StandardCharsets.US_ASCII);
    private static final byte[] TS = "\"ts\":\"".getBytes(StandardCharsets.US_ASCII);

    /** Where `needle` starts in data[from, to), or -1. */
    private static int find(byte[] data, int from, int to, byte[] needle) {
        outer:
        for (int i = from; i <= to - needle.length; i++) {
            for (int j = 0; j < needle.length; j++) {
                if (data[i + j] != needle[j]) {
                    continue outer;
                }
            }
            return i;
        }
        return -1;
    }

    /** `value` with its `ts` moved `nanos` later (the same RFC 3339 instant, as Instant prints it). */
    static byte[] shiftTs(byte[] value, long nanos) {
        int at = find(value, 0, value.length, TS);
        if (at < 0) {
            return value;
        }
        int from = at + TS.length;
        int to = from;
        while (to < value.length && value[to] != '"') {
            to++;
        }
        String stamp = new String(value, from, to - from, StandardCharsets.US_ASCII);
        byte[] moved = Instant.parse(stamp).plusNanos(nanos).toString().getBytes(StandardCharsets.US_ASCII);
        byte[] out = new byte[value.length - (to - from) + moved.length];
        System.arraycopy(value, 0, out, 0, from);
        System.arraycopy(moved, 0, out, from, moved.length);
        System.arraycopy(value, to, out, from + moved.length, value.length - to);
        return out;
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String topic = args[1];
        // The whole file in memory, as bytes: a record is then two copies, no decoding (the outage stream is ~300 MB).
        byte[] data = Files.readAllBytes(Path.of(args[2]));
        int lines = 0;
        for (byte b : data) {
            lines += b == '\n' ? 1 : 0;
        }
        int[] starts = new int[lines + 1];
        for (int i = 0, n = 1; i < data.length && n <= lines; i++) {
            if (data[i] == '\n') {
                starts[n++] = i + 1;
            }
        }
        boolean keyed = args[3].equals("1");
        String[] phases = args[4].split(",");
        long shiftNanos = args.length > 5 ? (long) (Double.parseDouble(args[5]) * 1e9) : 0L;

        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("acks", "all");  // as pipeline.io.kafka.make_producer
        props.put("linger.ms", "20");
        props.put("batch.size", Integer.toString(256 * 1024));
        props.put("compression.type", "none");
        props.put("max.request.size", Integer.toString(2 * 1024 * 1024));
        props.put("buffer.memory", Long.toString(64L * 1024 * 1024));
        AtomicLong acked = new AtomicLong();
        AtomicLong failed = new AtomicLong();
        Callback onAck = (metadata, error) -> (error == null ? acked : failed).incrementAndGet();
        long sent = 0;
        try (KafkaProducer<byte[], byte[]> producer =
                new KafkaProducer<>(props, new ByteArraySerializer(), new ByteArraySerializer())) {
            long reported = 0;
            for (String phase : phases) {
                String[] parts = phase.split(":");
                double seconds = Double.parseDouble(parts[0]);
                double rate = Double.parseDouble(parts[1]);
                long start = System.currentTimeMillis();
                long phaseSent = 0;
                long now;
                while ((now = System.currentTimeMillis()) < start + (long) (seconds * 1000)) {
                    long due = (long) ((now - start) / 1000.0 * rate) - phaseSent;
                    for (long i = 0; i < due; i++) {
                        int n = (int) (sent % lines);
                        int from = starts[n];
                        int to = starts[n + 1] - 1;  // without its newline
                        int at = find(data, from, to, ID);
                        byte[] value;
                        if (at < 0) {
                            value = Arrays.copyOfRange(data, from, to);
                        } else {
                            byte[] id = (sent + "-").getBytes(StandardCharsets.US_ASCII);
                            int tail = at + ID.length;
                            value = new byte[(at - from) + NEW_ID.length + id.length + (to - tail)];
                            System.arraycopy(data, from, value, 0, at - from);
                            System.arraycopy(NEW_ID, 0, value, at - from, NEW_ID.length);
                            System.arraycopy(id, 0, value, at - from + NEW_ID.length, id.length);
                            System.arraycopy(data, tail, value, at - from + NEW_ID.length + id.length, to - tail);
                        }
                        long cycle = sent / lines;
                        if (cycle > 0 && shiftNanos != 0) {
                            value = shiftTs(value, cycle * shiftNanos);
                        }
                        byte[] key = null;
                        if (keyed) {
                            int service = find(data, from, to, SERVICE) + SERVICE.length;
                            int end = service;
                            while (data[end] != '"') {
                                end++;
                            }
                            key = Arrays.copyOfRange(data, service, end);
                        }
                        producer.send(new ProducerRecord<>(topic, key, value), onAck);
                        sent++;
                        phaseSent++;
                    }
                    if (now - reported >= 100) {
                        System.out.println(now + " " + sent + " " + acked.get());
                        System.out.flush();
                        reported = now;
                    }
                    Thread.sleep(5);
                }
            }
            producer.flush();
        }
        System.out.println(System.currentTimeMillis() + " " + sent + " " + acked.get());
        System.out.println("done " + sent + " " + acked.get() + " " + failed.get());
        System.out.flush();
        System.exit(failed.get() == 0 ? 0 : 1);
    }
}
