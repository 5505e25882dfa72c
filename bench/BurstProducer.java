// The burst benchmark's load generator (bench/bench_outage.py --producer java): a paced producer cheap
// enough that the bench measures the consumer, not its own producer.
//
//   java -cp <dir>:<kafka lib>/* BurstProducer BOOTSTRAP TOPIC EVENTS.jsonl KEYED PLAN
//
// PLAN is "seconds:events_per_s,..." run one phase after another. Each record is the next line of
// EVENTS.jsonl (cycled) with its event id made unique exactly as the Python producer does
// ("event_id":"o... -> "event_id":"b<n>-...); KEYED 1 keys it by its service, 0 sends it unkeyed.
// Every 100 ms it prints "<epoch ms> <sent> <acknowledged>"; at the end, after a flush, "done <sent>
// <acknowledged> <failed>". It exits 1 if the broker refused a record.

import java.io.BufferedReader;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public final class BurstProducer {
    private static final String ID = "\"event_id\":\"o";
    private static final String SERVICE = "\"service\":\"";

    private final Path events;
    private BufferedReader reader;

    private BurstProducer(Path events) throws IOException {
        this.events = events;
        this.reader = Files.newBufferedReader(events, StandardCharsets.UTF_8);
    }

    /** The next line of the file, from the top again at its end. */
    private String next() throws IOException {
        String line = reader.readLine();
        if (line == null) {
            reader.close();
            reader = Files.newBufferedReader(events, StandardCharsets.UTF_8);
            line = reader.readLine();
        }
        return line;
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String topic = args[1];
        BurstProducer source = new BurstProducer(Path.of(args[2]));
        boolean keyed = args[3].equals("1");
        String[] phases = args[4].split(",");

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
                        String line = source.next();
                        int at = line.indexOf(ID);
                        String value = at < 0 ? line
                                : line.substring(0, at) + "\"event_id\":\"b" + sent + "-" + line.substring(at + ID.length());
                        byte[] key = null;
                        if (keyed) {
                            int from = line.indexOf(SERVICE) + SERVICE.length();
                            key = line.substring(from, line.indexOf('"', from)).getBytes(StandardCharsets.UTF_8);
                        }
                        producer.send(new ProducerRecord<>(topic, key, value.getBytes(StandardCharsets.UTF_8)),
                                (metadata, error) -> (error == null ? acked : failed).incrementAndGet());
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
