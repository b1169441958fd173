// MirrorMaker 2's own client code, as a command the tests run: what a
// MirrorMaker 2 user's tools see of a cluster strait (or MirrorMaker 2)
// replicates into. Nothing here decodes a byte itself: every answer comes
// from Apache Kafka's connect-mirror-client and connect-mirror classes
// (RemoteClusterUtils, MirrorClient, OffsetSync/Checkpoint/Heartbeat
// .deserializeRecord), so the tests check strait against the real code.
//
// Compiled and run by tests/support/mm2.rs against the sandbox's Kafka
// jars (javac -cp "LIB/*"). Output is one result a line, its first word
// saying what it is, for the test to parse; logs go to stderr.
//
//   translate BOOTSTRAP SOURCE_ALIAS GROUP
//       RemoteClusterUtils.translateOffsets:
//       "offset TOPIC PARTITION OFFSET METADATA" (the metadata last, maybe empty)
//   client BOOTSTRAP SOURCE_ALIAS
//       MirrorClient: "hops ALIAS N", "heartbeat-topic T",
//       "checkpoint-topic T", "upstream-cluster C",
//       "remote-topic T SOURCE UPSTREAM_TOPIC" (remoteTopics(SOURCE_ALIAS))
//   read offset-syncs|checkpoints|heartbeats BOOTSTRAP TOPIC
//       every record of TOPIC (read_committed, from the beginning to the
//       end offsets taken first) through MirrorMaker 2's deserializer:
//       "offset-sync PART OFFSET TOPIC PARTITION UPSTREAM DOWNSTREAM",
//       "checkpoint PART OFFSET GROUP TOPIC PARTITION UPSTREAM DOWNSTREAM METADATA",
//       "heartbeat PART OFFSET SOURCE TARGET TIMESTAMP", or
//       "undecodable PART OFFSET EXCEPTION" for a record it refuses.

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.connect.mirror.Checkpoint;
import org.apache.kafka.connect.mirror.Heartbeat;
import org.apache.kafka.connect.mirror.MirrorClient;
import org.apache.kafka.connect.mirror.OffsetSync;
import org.apache.kafka.connect.mirror.RemoteClusterUtils;
import org.apache.kafka.connect.mirror.ReplicationPolicy;

public class Mm2Client {
    private static final Duration TIMEOUT = Duration.ofSeconds(30);

    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            usage();
        }
        switch (args[0]) {
            case "translate" -> {
                need(args, 4);
                translate(args[1], args[2], args[3]);
            }
            case "client" -> {
                need(args, 3);
                client(args[1], args[2]);
            }
            case "read" -> {
                need(args, 4);
                read(args[1], args[2], args[3]);
            }
            default -> usage();
        }
    }

    private static void need(String[] args, int n) {
        if (args.length != n) {
            usage();
        }
    }

    private static void usage() {
        System.err.println("usage: Mm2Client translate BOOTSTRAP SOURCE_ALIAS GROUP"
                + " | client BOOTSTRAP SOURCE_ALIAS"
                + " | read offset-syncs|checkpoints|heartbeats BOOTSTRAP TOPIC");
        System.exit(2);
    }

    private static Map<String, Object> props(String bootstrap) {
        Map<String, Object> p = new HashMap<>();
        p.put("bootstrap.servers", bootstrap);
        return p;
    }

    private static void translate(String bootstrap, String alias, String group) throws Exception {
        Map<TopicPartition, OffsetAndMetadata> got =
                RemoteClusterUtils.translateOffsets(props(bootstrap), alias, group, TIMEOUT);
        List<String> lines = new ArrayList<>();
        for (Map.Entry<TopicPartition, OffsetAndMetadata> e : got.entrySet()) {
            lines.add("offset " + e.getKey().topic() + " " + e.getKey().partition() + " "
                    + e.getValue().offset() + " " + e.getValue().metadata());
        }
        lines.sort(null);
        lines.forEach(System.out::println);
    }

    private static void client(String bootstrap, String alias) throws Exception {
        try (MirrorClient c = new MirrorClient(props(bootstrap))) {
            System.out.println("hops " + alias + " " + c.replicationHops(alias));
            for (String t : new TreeSet<>(c.heartbeatTopics())) {
                System.out.println("heartbeat-topic " + t);
            }
            for (String t : new TreeSet<>(c.checkpointTopics())) {
                System.out.println("checkpoint-topic " + t);
            }
            for (String a : new TreeSet<>(c.upstreamClusters())) {
                System.out.println("upstream-cluster " + a);
            }
            ReplicationPolicy policy = c.replicationPolicy();
            for (String t : new TreeSet<>(c.remoteTopics(alias))) {
                System.out.println("remote-topic " + t + " " + policy.topicSource(t) + " "
                        + policy.upstreamTopic(t));
            }
        }
    }

    private static void read(String kind, String bootstrap, String topic) {
        Map<String, Object> p = props(bootstrap);
        p.put("isolation.level", "read_committed");
        p.put("enable.auto.commit", "false");
        try (KafkaConsumer<byte[], byte[]> consumer =
                new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            List<TopicPartition> parts = new ArrayList<>();
            List<PartitionInfo> infos = consumer.partitionsFor(topic, TIMEOUT);
            if (infos == null || infos.isEmpty()) {
                System.err.println("Mm2Client: no topic " + topic);
                System.exit(1);
            }
            for (PartitionInfo i : infos) {
                parts.add(new TopicPartition(topic, i.partition()));
            }
            consumer.assign(parts);
            consumer.seekToBeginning(parts);
            Map<TopicPartition, Long> end = consumer.endOffsets(parts, TIMEOUT);
            long deadline = System.currentTimeMillis() + TIMEOUT.toMillis();
            while (!atEnd(consumer, end)) {
                if (System.currentTimeMillis() > deadline) {
                    System.err.println("Mm2Client: " + topic + " not read to " + end + " in " + TIMEOUT);
                    System.exit(1);
                }
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(200))) {
                    if (r.offset() < end.get(new TopicPartition(r.topic(), r.partition()))) {
                        System.out.println(decode(kind, r));
                    }
                }
            }
        }
    }

    private static boolean atEnd(KafkaConsumer<byte[], byte[]> c, Map<TopicPartition, Long> end) {
        for (Map.Entry<TopicPartition, Long> e : end.entrySet()) {
            if (c.position(e.getKey(), TIMEOUT) < e.getValue()) {
                return false;
            }
        }
        return true;
    }

    private static String decode(String kind, ConsumerRecord<byte[], byte[]> r) {
        String at = r.partition() + " " + r.offset();
        try {
            switch (kind) {
                case "offset-syncs" -> {
                    OffsetSync s = OffsetSync.deserializeRecord(r);
                    return "offset-sync " + at + " " + s.topicPartition().topic() + " "
                            + s.topicPartition().partition() + " " + s.upstreamOffset() + " "
                            + s.downstreamOffset();
                }
                case "checkpoints" -> {
                    Checkpoint c = Checkpoint.deserializeRecord(r);
                    return "checkpoint " + at + " " + c.consumerGroupId() + " "
                            + c.topicPartition().topic() + " " + c.topicPartition().partition() + " "
                            + c.upstreamOffset() + " " + c.downstreamOffset() + " " + c.metadata();
                }
                case "heartbeats" -> {
                    Heartbeat h = Heartbeat.deserializeRecord(r);
                    return "heartbeat " + at + " " + h.sourceClusterAlias() + " "
                            + h.targetClusterAlias() + " " + h.timestamp();
                }
                default -> {
                    usage();
                    return "";
                }
            }
        } catch (RuntimeException e) {
            return "undecodable " + at + " " + e.toString().replace('\n', ' ');
        }
    }
}
