"""Knowledge distillation: the loss, the teacher it loads and the teachers it refuses, what it composes with."""
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
import torchvision

import baseline
import common
import cutmix
import distill
from conftest import make_folder, run_argv
from support.teacher import load_teacher


@pytest.fixture
def teacher(run_args, tmp_path):
    common.main(baseline, run_args(out='teacher'))
    return tmp_path / 'teacher' / 'model.pt'


def distill_run(teacher, hard_weight=0.0):
    return SimpleNamespace(args=SimpleNamespace(teacher=str(teacher), teacher_arch=None, temperature=4.0,
                                                hard_weight=hard_weight, soft_weight=1.0),
                           aside={'teacher': load_teacher(str(teacher), None, 3)[0]})


# ---------------------------------------------------------------- the loss and the student

def test_distillation_soft_loss_is_at_its_minimum_when_the_student_is_the_teacher(teacher):
    run = distill_run(teacher)
    net = run.aside['teacher']
    images, y = torch.randn(6, 3, 32, 32), F.one_hot(torch.randint(0, 3, (6,)), 3).float()
    logits = net(images).detach().requires_grad_()
    loss = distill.loss(logits, y, images, run)
    assert loss.item() == pytest.approx(0, abs=1e-6)
    loss.backward()
    assert logits.grad.abs().max() < 1e-6
    worse = distill.loss(logits.detach() + torch.randn(6, 3), y, images, run)
    assert worse > loss


def test_distillation_trains_the_student_and_never_the_teacher(teacher, run_args, tmp_path):
    result = common.main(distill, run_args('--teacher', teacher, '--temperature', '4', out='student'))
    run = common.prepare(distill, run_args('--teacher', teacher, out='student2'))
    net = run.aside['teacher']
    assert all(p.grad is None and not p.requires_grad for p in net.parameters())
    assert not net.training and 'teacher' not in run.extra  # kept beside the net, never saved with it
    assert result['tricks']['distill']['temperature'] == 4.0
    assert common.prepare(distill, run_args('--teacher', teacher, out='student2')).loss is distill.loss
    with pytest.raises(SystemExit, match='--teacher PATH is required'):
        common.main(distill, run_args(out='nope'))


def test_distillation_is_the_papers_eq_6_by_default(teacher, run_args):
    args = common.parse(distill, run_args('--teacher', teacher), common.RECIPE)[0]
    assert (args.hard_weight, args.soft_weight) == (1.0, 1.0)
    net = load_teacher(str(teacher), None, 3)[0]
    run = SimpleNamespace(args=args, aside={'teacher': net})
    images, y = torch.randn(6, 3, 32, 32), F.one_hot(torch.randint(0, 3, (6,)), 3).float()
    logits, r = torch.randn(6, 3), net(images)
    t = args.temperature
    eq6 = F.cross_entropy(logits, y) + t * t * (F.softmax(r / t, 1) * (F.log_softmax(r / t, 1) - F.log_softmax(
        logits / t, 1))).sum(1).mean()
    torch.testing.assert_close(distill.loss(logits, y, images, run), eq6)


# ---------------------------------------------------------------- the teacher

@pytest.fixture
def teacher_run(run_args, tmp_path):
    common.main(baseline, run_args(out='teacher'))
    return tmp_path / 'teacher'


def test_distill_learns_from_a_teachers_last_pt_as_from_its_model_pt(teacher_run):
    from_last, saved = load_teacher(str(teacher_run / 'last.pt'), None, 3)
    from_model, _ = load_teacher(str(teacher_run / 'model.pt'), None, 3)
    assert saved['arch'] == 'resnet20' and saved['classes'] == ['class0', 'class1', 'class2']
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(from_last(x), from_model(x))


@pytest.mark.parametrize('teacher, arch, message', [
    ('teacher/model.pt', 'resnet20', r'teacher/model.pt holds a training checkpoint, not a state dict: drop --teacher-arch'),
    ('teacher/last.pt', 'resnet20', r'teacher/last.pt holds a training checkpoint, not a state dict: drop --teacher-arch'),
    ('nowhere.pt', None, r'distill: --teacher .*nowhere.pt does not exist'),
    ('five.pth', 'resnet20', r'does not fit resnet20 with 3 classes: fc.weight is 5 x 64 there, 3 x 64 here'),
    ('five.pth', 'resnet32', r'does not fit resnet32 with 3 classes: it has no layer1.3.conv1.weight, which the net '
                             r'needs'),
])
def test_a_teacher_that_does_not_fit_says_why_in_words(teacher, arch, message, teacher_run, run_args, tmp_path):
    import models
    torch.save(models.build('resnet20', 5).state_dict(), tmp_path / 'five.pth')
    flags = ('--teacher', tmp_path / teacher) + (('--teacher-arch', arch) if arch else ())
    with pytest.raises(SystemExit, match=message):
        common.main(distill, run_args(*flags, out='student'))


def test_an_old_checkpoint_or_a_teacher_trained_on_other_images_is_one_clear_line(teacher, run_args, tmp_path):
    last = torch.load(tmp_path / 'teacher' / 'last.pt', weights_only=True)
    torch.save({k: v for k, v in last.items() if k != 'arch'}, tmp_path / 'old-last.pt')  # as last.pt was before
    with pytest.raises(SystemExit, match=r"old-last.pt is not a model.pt of this repo \(a last.pt saved before last.pt "
                                         r"described its net\): pass a run's model.pt"):
        common.main(distill, run_args('--teacher', tmp_path / 'old-last.pt', out='a'))
    saved = torch.load(teacher, weights_only=True)
    torch.save(dict(saved, mean=[0.4914, 0.4822, 0.4465]), tmp_path / 'cifar-teacher.pt')  # CIFAR's statistics
    with pytest.raises(SystemExit, match=r"the teacher's mean \(\[0.4914.*\) is not the student's \(\[0.485"):
        common.main(distill, run_args('--teacher', tmp_path / 'cifar-teacher.pt', out='b'))


def test_a_teacher_that_saw_the_students_val_images_is_refused(run_args, tmp_path, capsys):
    common.main(baseline, run_args(out='teacher'))  # trained on every training image
    with pytest.raises(SystemExit, match=r'the student selects on --val-split 0.25, but the teacher was trained with '
                                         r'--val-split 0.0 .* train the teacher with --val-split 0.25'):
        common.main(distill, run_args('--val-split', '0.25', '--teacher', tmp_path / 'teacher' / 'model.pt',
                                      out='student'))
    common.main(baseline, run_args('--val-split', '0.25', out='teacher25'))
    result = common.main(distill, run_args('--val-split', '0.25', '--teacher', tmp_path / 'teacher25' / 'model.pt',
                                           out='student25'))
    assert result['best_val_acc'] is not None
    # a state dict says nothing of its images: said, not refused
    torch.save(torch.load(tmp_path / 'teacher' / 'model.pt', weights_only=True)['state_dict'], tmp_path / 'sd.pth')
    common.main(distill, run_args('--val-split', '0.25', '--teacher', tmp_path / 'sd.pth', '--teacher-arch', 'resnet20',
                                  out='student-sd'))
    assert 'distill: cannot tell which images' in capsys.readouterr().out


def test_a_teacher_trained_on_other_files_with_the_same_val_split_is_refused(run_args, tmp_path):
    # B holds the first images of each of A's classes: with one --val-split, the student's val images were
    # among the teacher's training images
    common.main(baseline, run_args('--val-split', '0.25', out='teacher'))
    part = make_folder(tmp_path / 'part', classes=3, per_class=6, test_per_class=4)
    student = run_argv(part, tmp_path, epochs=1, batch_size=8, device='cpu')
    teacher = tmp_path / 'teacher' / 'model.pt'
    with pytest.raises(SystemExit, match=r'student selects on --val-split 0.25 of its data, but the teacher was '
                                         r"trained on other files .*: train the teacher on the student's --data"):
        common.main(distill, student('--val-split', '0.25', '--teacher', teacher, out='student'))
    assert not (tmp_path / 'student').exists()
    # the val images do not depend on --subset and --test-subset: those may differ
    common.main(distill, run_args('--val-split', '0.25', '--subset', '12', '--test-subset', '6', '--teacher', teacher,
                                  out='student'))


def test_a_torchvision_resnet50_teacher_is_built_as_torchvision_builds_it(tmp_path):
    theirs = torchvision.models.resnet50(num_classes=3).eval()
    torch.save(theirs.state_dict(), tmp_path / 'r50.pth')
    ours, saved = load_teacher(str(tmp_path / 'r50.pth'), 'resnet50', 3)
    assert saved is None and ours.options['variant'] == 'B'  # the stride on the 3x3 conv, as torchvision's
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(ours(x), theirs(x))


# ---------------------------------------------------------------- with other tricks

def test_distillation_composes_with_mixup_and_label_smoothing(teacher, run_args):
    result = common.main(distill, run_args('--teacher', teacher, '--with', 'mixup', 'labelsmooth', out='student'))
    assert set(result['tricks']) == {'distill', 'mixup', 'labelsmooth'}


def test_distillation_mixup_and_cutmix_compose(run_args, tmp_path):
    common.main(baseline, run_args(out='teacher'))
    result = common.main(cutmix, run_args('--cutmix-prob', '1', '--with', 'mixup', 'distill', '--teacher',
                                          tmp_path / 'teacher' / 'model.pt', out='student'))
    assert set(result['tricks']) == {'cutmix', 'mixup', 'distill'}


# ---------------------------------------------------------------- flags that cannot train, one line each

@pytest.mark.parametrize('value', ['1e200', '1e-200', '0.001', '1001'])
def test_a_temperature_outside_0_01_to_1000_is_one_argparse_line_not_an_overflow_or_a_divergence(value, capsys):
    from support.tricks import parse
    with pytest.raises(SystemExit) as e:
        parse(distill, ['--temperature', value], common.RECIPE)
    assert e.value.code == 2
    assert f"argument --temperature: must be in [0.01, 1000] (the paper's is 20), got {value}" in capsys.readouterr().err


def test_both_weights_0_stop_before_the_teacher_loads_as_the_loss_would_be_exactly_0():
    run = SimpleNamespace(args=SimpleNamespace(hard_weight=0.0, soft_weight=0.0, teacher='not/read.pt'))
    with pytest.raises(SystemExit, match=r'^error: distill: --hard-weight 0 and --soft-weight 0 make the loss 0, and '
                                         r'nothing would train: give either a weight above 0$'):
        distill.start(run)


def test_a_teacher_of_3000_classes_is_named_by_its_count_and_first_other_class_not_a_line_listing_all():
    from support.teacher import check_teacher
    student = SimpleNamespace(classes=['cat', 'dog', 'owl'], image_size=32, mean=torch.zeros(3), std=torch.ones(3))
    run = SimpleNamespace(data=student, args=SimpleNamespace(val_split=0.0))
    saved = {'classes': ['cat', 'dog'] + [f'class{i}' for i in range(2998)], 'image_size': 32, 'mean': [0.0] * 3,
             'std': [1.0] * 3}
    with pytest.raises(SystemExit) as e:
        check_teacher(saved, run)
    assert str(e.value) == ("error: distill: the teacher's classes (3000 items; #3: 'class0') is not the student's "
                            "(3 items; #3: 'owl'): train the teacher on the student's data")
    with pytest.raises(SystemExit, match=r"\(3000 items; #4: 'class1'\) is not the student's \(3 items; #4: none\)"):
        check_teacher(dict(saved, classes=['cat', 'dog', 'owl'] + saved['classes'][3:]), run)
